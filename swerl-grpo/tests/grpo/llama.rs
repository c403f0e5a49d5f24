//! The trainer with `swerl-model`'s Llama: a tiny random model written in Hugging Face layout
//! with a byte-level tokenizer and a ChatML template, prompts rendered through that template,
//! checkpoints in Hugging Face layout, exact resume.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use swerl_grpo::llama::{LlamaPolicy, ModelSettings};
use swerl_grpo::{
    Dataset, Environment, Generation, PreparedPrompt, PromptOverflow, RewardOutcome, RlInstance,
    StepMetrics, SweRlEnvironment, TrainConfig, Trainer, read_metrics,
};
use swerl_model::{Llama, ModelConfig, ModelOptions, SaveOptions, TokenIds};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const SPECIALS: [&str; 2] = ["<|im_start|>", "<|im_end|>"];

/// Writes a tiny random Llama with a byte-level BPE tokenizer (no merges) into `dir`.
pub fn write_tiny_model(dir: &Path) -> Result<()> {
    let mut bytes: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    bytes.sort_unstable();
    let mut vocab: HashMap<String, u32> = bytes.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    for (k, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).to_owned(), (bytes.len() + k) as u32);
    }
    let size = vocab.len();
    let bpe = BPE::builder().vocab_and_merges(vocab, Vec::new()).build().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    let specials: Vec<tokenizers::AddedToken> =
        SPECIALS.iter().map(|s| tokenizers::AddedToken::from((*s).to_owned(), true)).collect();
    tok.add_special_tokens(&specials);
    std::fs::create_dir_all(dir)?;
    let eos = (size - 1) as u32;
    let config = ModelConfig {
        vocab_size: size,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        max_position_embeddings: 4096,
        tie_word_embeddings: true,
        bos_token_id: Some(eos - 1),
        eos_token_id: Some(TokenIds::One(eos)),
        pad_token_id: Some(eos),
        ..ModelConfig::default()
    };
    let model = Llama::new_random(config, 7, 0.02, &ModelOptions::default())?;
    swerl_model::save_pretrained(dir, &model, None, None, &SaveOptions::default())?;
    tok.save(dir.join("tokenizer.json"), false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = serde_json::json!({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
        "chat_template": CHATML
    });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string())?;
    Ok(())
}

/// Small RL instances (a few lines of code each).
pub fn instances(n: usize) -> Vec<RlInstance> {
    (0..n)
        .map(|i| RlInstance {
            instance_id: format!("o__r-{i}"),
            problem_statement: format!("f{i} returns the wrong value"),
            code_context: BTreeMap::from([(format!("m{i}.py"), format!("def f{i}():\n    return {i}\n"))]),
            oracle_new_content: BTreeMap::from([(format!("m{i}.py"), format!("def f{i}():\n    return {}\n", i + 1))]),
        })
        .collect()
}

/// SWE-RL prompts, but a reward that varies on a random model: the fraction of `e` characters.
struct LetterTask {
    inner: SweRlEnvironment,
}

impl Environment for LetterTask {
    fn prompts(&self) -> &[PreparedPrompt] {
        self.inner.prompts()
    }

    fn score(&self, _prompts: &[usize], completions: &[&Generation]) -> Vec<RewardOutcome> {
        completions
            .iter()
            .map(|g| {
                let n = g.text.chars().count().max(1) as f64;
                let e = g.text.chars().filter(|&c| c == 'e').count() as f64;
                RewardOutcome { reward: e / n, format_error: false, reason: None }
            })
            .collect()
    }
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        prompts_per_step: 2,
        group_size: 3,
        max_new_tokens: 6,
        max_prompt_tokens: 4000,
        prompt_overflow: PromptOverflow::Skip,
        micro_batch_size: 4,
        num_iterations: 2,
        beta: 0.05,
        learning_rate: 3e-3,
        save_steps: 2,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn run(model: &Path, out: &Path, steps: u64, resume: bool) -> Result<Trainer<LlamaPolicy>> {
    let policy = LlamaPolicy::load(model.to_str().expect("utf-8 path"), &ModelSettings::default())?;
    let data = Dataset { path: "mem".into(), instances: instances(3), skipped: Vec::new() };
    let cfg = config(steps);
    let (inner, report) = SweRlEnvironment::new(data, &policy, cfg.max_prompt_tokens, cfg.prompt_overflow)?;
    assert_eq!(report.fitted, 3);
    let env = LetterTask { inner };
    let optimizer = policy.optimizer(&cfg)?;
    let mut trainer = Trainer::new(cfg, policy, optimizer, out)?;
    if resume {
        assert_eq!(trainer.resume()?, Some(2));
    }
    trainer.train(&env, &mut |_| {})?;
    Ok(trainer)
}

fn strip(m: Vec<StepMetrics>) -> Vec<StepMetrics> {
    m.into_iter().map(|m| m.without_timings()).collect()
}

#[test]
fn llama_policy_trains_saves_hf_checkpoints_and_resumes_exactly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("model");
    write_tiny_model(&model)?;

    let a = run(&model, &tmp.path().join("a"), 3, false)?;
    let expected = strip(read_metrics(tmp.path().join("a/metrics.jsonl"))?);
    assert_eq!(expected.len(), 3);
    assert!(expected.iter().all(|m| m.updates == 2 && m.grad_norm > 0.0), "{expected:#?}");
    assert!(expected[2].kl > 0.0, "the policy never left the reference");
    assert!(expected.iter().all(|m| m.entropy > 0.0 && m.completions_mean_length > 0.0));

    // The checkpoint is a loadable Hugging Face model.
    let ckpt = tmp.path().join("a/checkpoint-3/model");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"] {
        assert!(ckpt.join(f).is_file(), "missing {f}");
    }
    let reloaded = LlamaPolicy::load(ckpt.to_str().expect("utf-8"), &ModelSettings::default())?;
    for (x, y) in reloaded.model().parameters().iter().zip(a.policy().model().parameters()) {
        assert_eq!(x.as_tensor().flatten_all()?.to_vec1::<f32>()?, y.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }

    // Interrupted after the step-2 checkpoint, resumed: same metrics and weights.
    run(&model, &tmp.path().join("b"), 2, false)?;
    let b = run(&model, &tmp.path().join("b"), 3, true)?;
    assert_eq!(strip(read_metrics(tmp.path().join("b/metrics.jsonl"))?), expected);
    for (x, y) in b.policy().model().parameters().iter().zip(a.policy().model().parameters()) {
        assert_eq!(x.as_tensor().flatten_all()?.to_vec1::<f32>()?, y.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(())
}
