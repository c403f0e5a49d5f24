//! Training steps end to end: gradients, clipping, AdamW, bf16 compute with f32 master weights.

use anyhow::Result;
use swerl_model::{
    AdamW, AdamWConfig, DType, Gradients, Llama, ModelOptions, Recompute, ScoreOptions, TokenBatch,
    TrainOptions,
};

use crate::fixtures::{byte_config, values};

fn batch() -> Result<TokenBatch> {
    Ok(TokenBatch::from_prompt_completions(
        &[vec![10, 11, 12], vec![20, 21], vec![30]],
        &[vec![40, 41, 42, 43], vec![50, 51], vec![60, 61, 62]],
        0,
    )?)
}

fn nll_step(model: &Llama, batch: &TokenBatch, opts: &TrainOptions) -> Result<(f32, Gradients)> {
    let fwd = model.forward_train(batch, opts)?;
    let loss = ((fwd.logprobs() * fwd.mask())?.sum_all()? / -(batch.num_scored() as f64))?;
    let value = loss.to_scalar::<f32>()?;
    let mut grads = Gradients::new();
    fwd.backward(&loss, &mut grads)?;
    Ok((value, grads))
}

#[test]
fn adamw_steps_fit_a_batch() -> Result<()> {
    let model = Llama::new_random(byte_config(), 3, 0.02, &ModelOptions::default())?;
    let batch = batch()?;
    let mut opt = AdamW::new(model.named_parameters(), AdamWConfig { lr: 3e-3, ..AdamWConfig::default() })?;
    let opts = TrainOptions::default();
    let (first, _) = nll_step(&model, &batch, &opts)?;
    let mut last = first;
    for _ in 0..30 {
        let (loss, mut grads) = nll_step(&model, &batch, &opts)?;
        grads.clip_global_norm(1.0)?;
        opt.step(&grads, 3e-3)?;
        last = loss;
    }
    assert!(first > 5.0, "random init is near uniform over the vocabulary: {first}");
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    // The no-grad scorer sees the trained weights.
    let s = model.score(&batch, &ScoreOptions::default())?;
    let mean = -values(&s.logprobs)?.iter().sum::<f32>() / batch.num_scored() as f32;
    assert!(mean < last, "{mean} vs {last}");
    Ok(())
}

#[test]
fn gradient_accumulation_equals_one_big_batch() -> Result<()> {
    let model = Llama::new_random(byte_config(), 4, 0.1, &ModelOptions::default())?;
    let opts = TrainOptions { recompute: Recompute::Always, ..TrainOptions::default() };
    let full = batch()?;
    let fwd = model.forward_train(&full, &opts)?;
    let loss = (fwd.logprobs() * fwd.mask())?.sum_all()?;
    let mut big = Gradients::new();
    fwd.backward(&loss, &mut big)?;
    let mut acc = Gradients::new();
    for (p, c) in [
        (vec![10u32, 11, 12], vec![40u32, 41, 42, 43]),
        (vec![20, 21], vec![50, 51]),
        (vec![30], vec![60, 61, 62]),
    ] {
        let b = TokenBatch::from_prompt_completions(&[p], &[c], 0)?;
        let fwd = model.forward_train(&b, &opts)?;
        let loss = (fwd.logprobs() * fwd.mask())?.sum_all()?;
        fwd.backward(&loss, &mut acc)?;
    }
    for (name, var) in model.named_parameters() {
        let a = values(acc.get(var).expect("grad"))?;
        let b = values(big.get(var).expect("grad"))?;
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let d = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d / scale < 1e-4, "{name}: {}", d / scale);
    }
    Ok(())
}

#[test]
fn bf16_compute_keeps_f32_master_weights_and_close_gradients() -> Result<()> {
    let f32_model = Llama::new_random(byte_config(), 5, 0.1, &ModelOptions::default())?;
    let mut bf16_model = f32_model.deep_clone()?;
    bf16_model.set_compute_dtype(DType::BF16)?;
    let b = batch()?;
    let (l32, g32) = nll_step(&f32_model, &b, &TrainOptions::default())?;
    let (l16, g16) = nll_step(&bf16_model, &b, &TrainOptions::default())?;
    assert!((l32 - l16).abs() < 0.05 * l32.abs(), "{l32} vs {l16}");
    for ((name, v32), (_, v16)) in f32_model.named_parameters().iter().zip(bf16_model.named_parameters()) {
        assert_eq!(v16.dtype(), DType::F32, "{name}");
        let a = g32.get(v32).expect("grad");
        let c = g16.get(v16).expect("grad");
        assert_eq!(c.dtype(), DType::F32);
        let cos = (a * c)?.sum_all()?.to_scalar::<f32>()?
            / (a.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?
                * c.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?);
        assert!(cos > 0.98, "{name}: cosine {cos}");
    }
    Ok(())
}
