//! Numbers against PyTorch/transformers (`tests/golden/make_goldens.py`): logits, per-token
//! log-probs and entropies, gradients, AdamW and LR schedules.

use anyhow::Result;
use swerl_model::{
    AdamW, AdamWConfig, Gradients, LrSchedule, ModelConfig, Recompute, ScheduleKind, ScoreOptions, Tensor,
    TokenBatch, TrainOptions, Var, load_dir,
};

use crate::fixtures::{floats, formula_model, golden, max_abs_diff, values, write_tokenizer};

fn prompts_completions(batch: &serde_json::Value) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let ids = |v: &serde_json::Value| -> Vec<Vec<u32>> {
        serde_json::from_value(v.clone()).expect("token id lists")
    };
    (ids(&batch["prompts"]), ids(&batch["completions"]))
}

#[test]
fn logits_logprobs_and_entropies_match_transformers() -> Result<()> {
    let g = golden("tiny_llama.json")?;
    for (name, m) in g["models"].as_object().expect("models") {
        let cfg = ModelConfig::from_json_str(&m["config"].to_string(), name)?;
        // Through the real loader: write the checkpoint in HF layout, read it back.
        let dir = tempfile::tempdir()?;
        let model = formula_model(&cfg)?;
        swerl_model::save_pretrained(dir.path(), &model, None, None, &Default::default())?;
        write_tokenizer(dir.path())?;
        let loaded = load_dir(dir.path(), &Default::default())?;
        let model = loaded.model;

        for s in m["sequences"].as_array().expect("sequences") {
            let ids: Vec<u32> = serde_json::from_value(s["ids"].clone())?;
            let logits = model.logits(&ids, &vec![true; ids.len()], 1)?;
            let d = max_abs_diff(&values(&logits)?, &floats(&s["logits"]));
            assert!(d < 2e-5, "{name}: logits differ by {d}");
        }

        let (prompts, completions) = prompts_completions(&m["batch"]);
        let batch = TokenBatch::from_prompt_completions(&prompts, &completions, 0)?;
        let s = model.score(&batch, &ScoreOptions::default())?;
        let d = max_abs_diff(&values(&s.logprobs)?, &floats(&m["batch"]["logprobs"]));
        assert!(d < 2e-5, "{name}: log-probs differ by {d}");
        let d = max_abs_diff(&values(&s.entropies)?, &floats(&m["batch"]["entropies"]));
        assert!(d < 2e-5, "{name}: entropies differ by {d}");
        let t07 = ScoreOptions { temperature: 0.7, ..ScoreOptions::default() };
        let s = model.score(&batch, &t07)?;
        let d = max_abs_diff(&values(&s.logprobs)?, &floats(&m["batch"]["logprobs_t07"]));
        assert!(d < 2e-5, "{name}: log-probs at T=0.7 differ by {d}");
    }
    Ok(())
}

#[test]
fn gradients_match_pytorch_for_every_parameter() -> Result<()> {
    let g = golden("tiny_llama.json")?;
    for (name, m) in g["models"].as_object().expect("models") {
        let cfg = ModelConfig::from_json_str(&m["config"].to_string(), name)?;
        let model = formula_model(&cfg)?;
        let (prompts, completions) = prompts_completions(&m["batch"]);
        let batch = TokenBatch::from_prompt_completions(&prompts, &completions, 0)?;
        for recompute in [Recompute::Always, Recompute::Never] {
            let opts = TrainOptions { recompute, ..TrainOptions::default() };
            let fwd = model.forward_train(&batch, &opts)?;
            let (b, c) = fwd.logprobs().dims2()?;
            let w = Tensor::from_vec(floats(&m["loss_weights"]), (b, c), model.device())?;
            let n = batch.num_scored() as f64;
            let mask = fwd.mask().clone();
            let lp_term = ((fwd.logprobs() * &w)? * &mask)?.sum_all()?;
            let ent_term = (fwd.entropies() * &mask)?.sum_all()?;
            let loss = ((lp_term / -n)? + (ent_term * (0.1 / n))?)?;
            let got_loss = loss.to_scalar::<f32>()?;
            let want_loss = m["loss"].as_f64().expect("loss") as f32;
            assert!((got_loss - want_loss).abs() < 1e-5, "{name}: loss {got_loss} vs {want_loss}");
            let mut grads = Gradients::new();
            fwd.backward(&loss, &mut grads)?;
            let want = m["grads"].as_object().expect("grads");
            assert_eq!(want.len(), model.named_parameters().len(), "{name}");
            for (pname, var) in model.named_parameters() {
                let gw = &want[pname];
                let got = values(grads.get(var).expect("every parameter has a gradient"))?;
                let norm = got.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                let want_norm = gw["norm"].as_f64().expect("norm");
                assert!(norm > 0.0, "{name} {pname}: zero gradient");
                assert!(
                    (norm - want_norm).abs() <= 1e-4 * want_norm.max(1e-3),
                    "{name} {pname}: gradient norm {norm} vs {want_norm}"
                );
                let idx: Vec<usize> = serde_json::from_value(gw["index"].clone())?;
                let picked: Vec<f32> = idx.iter().map(|&i| got[i]).collect();
                let d = max_abs_diff(&picked, &floats(&gw["values"]));
                assert!(d <= 1e-4 * want_norm as f32 + 1e-7, "{name} {pname}: {d}");
            }
        }
    }
    Ok(())
}

#[test]
fn adamw_with_clipping_matches_torch() -> Result<()> {
    let g = golden("adamw.json")?;
    let c = &g["config"];
    let dev = swerl_model::Device::Cpu;
    let weight = Var::from_tensor(&Tensor::from_vec(floats(&g["weight0"]), (2, 3), &dev)?)?;
    let bias = Var::from_tensor(&Tensor::from_vec(floats(&g["bias0"]), 3, &dev)?)?;
    let params = vec![("layer.weight".to_string(), weight.clone()), ("layer.bias".to_string(), bias.clone())];
    let mut opt = AdamW::new(
        &params,
        AdamWConfig {
            lr: c["lr"].as_f64().expect("lr"),
            beta1: c["beta1"].as_f64().expect("beta1"),
            beta2: c["beta2"].as_f64().expect("beta2"),
            eps: c["eps"].as_f64().expect("eps"),
            weight_decay: c["weight_decay"].as_f64().expect("wd"),
            decay_norms_and_biases: false,
        },
    )?;
    let dir = tempfile::tempdir()?;
    for (t, step) in g["steps"].as_array().expect("steps").iter().enumerate() {
        let mut grads = Gradients::new();
        grads.accumulate(&weight, &Tensor::from_vec(floats(&step["grad_weight"]), (2, 3), &dev)?)?;
        grads.accumulate(&bias, &Tensor::from_vec(floats(&step["grad_bias"]), 3, &dev)?)?;
        let norm = grads.clip_global_norm(c["max_grad_norm"].as_f64().expect("clip"))?;
        let want_norm = step["grad_norm"].as_f64().expect("norm");
        assert!((norm - want_norm).abs() < 1e-5, "step {t}: norm {norm} vs {want_norm}");
        opt.step(&grads, step["lr"].as_f64().expect("lr"))?;
        let dw = max_abs_diff(&values(weight.as_tensor())?, &floats(&step["weight"]));
        let db = max_abs_diff(&values(bias.as_tensor())?, &floats(&step["bias"]));
        assert!(dw < 1e-6 && db < 1e-6, "step {t}: weight {dw}, bias {db}");
        if t == 2 {
            // Resume from saved state into a fresh optimizer: the trajectory continues exactly.
            let path = dir.path().join("optimizer.safetensors");
            opt.save(&path)?;
            let mut resumed = AdamW::new(&params, opt.config().clone())?;
            resumed.load(&path)?;
            assert_eq!(resumed.steps(), 3);
            opt = resumed;
        }
    }
    Ok(())
}

#[test]
fn lr_schedules_match_transformers() -> Result<()> {
    let g = golden("adamw.json")?;
    let s = &g["schedules"];
    let cases = [
        ("linear", ScheduleKind::Linear, 0.0),
        ("cosine", ScheduleKind::Cosine, 0.0),
        ("constant", ScheduleKind::Constant, 0.0),
        ("cosine_min_lr_0.1", ScheduleKind::Cosine, 0.1),
    ];
    for (key, kind, min_lr_ratio) in cases {
        let sched = LrSchedule { kind, warmup_steps: 3, total_steps: 12, min_lr_ratio };
        for (step, want) in floats(&s[key]).into_iter().enumerate() {
            let got = sched.factor(step as u64) as f32;
            assert!((got - want).abs() < 1e-6, "{key} step {step}: {got} vs {want}");
        }
    }
    Ok(())
}
