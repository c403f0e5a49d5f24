//! Batched generation with a KV cache, checked against full forward passes.

use anyhow::Result;
use swerl_model::{
    FinishReason, GenerateOptions, GenerationRequest, Llama, ModelOptions, SamplingParams, ScoreOptions,
    StopReason, TokenBatch, Tokenizer,
};

use crate::fixtures::{byte_config, max_abs_diff, swerl_tokenizer, values};

fn setup() -> Result<(Llama, Tokenizer, tempfile::TempDir)> {
    // Large weights make distributions peaked, so greedy choices are well separated.
    let model = Llama::new_random(byte_config(), 11, 0.3, &ModelOptions::default())?;
    let dir = tempfile::tempdir()?;
    let tok = swerl_tokenizer(dir.path())?;
    Ok((model, tok, dir))
}

fn opts() -> GenerateOptions {
    GenerateOptions { eos_ids: vec![], pad_id: 0, max_batch: 0, ..Default::default() }
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![72, 101, 108], vec![200, 3, 44, 45, 46, 47, 10], vec![9]]
}

#[test]
fn cached_generation_equals_recomputing_the_full_forward() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    for temperature in [0.0, 0.7] {
        let requests: Vec<GenerationRequest> = prompts()
            .into_iter()
            .enumerate()
            .map(|(i, p)| GenerationRequest {
                prompt_ids: p,
                params: SamplingParams {
                    temperature,
                    max_new_tokens: 6 + 3 * i,
                    seed: Some(i as u64),
                    ..SamplingParams::default()
                },
            })
            .collect();
        let out = model.generate(&tok, &requests, &opts(), |_| {})?;
        for (r, c) in requests.iter().zip(&out) {
            assert_eq!(c.token_ids.len(), r.params.max_new_tokens);
            assert_eq!(c.finish_reason, FinishReason::Length);
            // Score prompt + completion in one uncached pass.
            let batch = TokenBatch::from_prompt_completions(
                std::slice::from_ref(&r.prompt_ids),
                std::slice::from_ref(&c.token_ids),
                0,
            )?;
            let t = if temperature == 0.0 { 1.0 } else { temperature };
            let s = model.score(&batch, &ScoreOptions { temperature: t, ..ScoreOptions::default() })?;
            let d = max_abs_diff(&values(&s.logprobs)?, &c.logprobs);
            assert!(d < 1e-4, "T={temperature}: cached vs full log-probs differ by {d}");
            if temperature == 0.0 {
                // Greedy: every token is the argmax of the full forward's logits.
                let mut seq = r.prompt_ids.clone();
                seq.extend(&c.token_ids);
                let logits = model.logits(&seq, &vec![true; seq.len()], 1)?.squeeze(0)?;
                let argmax: Vec<u32> = logits.argmax(1)?.to_vec1()?;
                let p = r.prompt_ids.len();
                assert_eq!(&argmax[p - 1..seq.len() - 1], c.token_ids.as_slice());
            }
        }
    }
    Ok(())
}

#[test]
fn batching_and_padding_do_not_change_greedy_outputs() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    let req = |p: Vec<u32>| GenerationRequest { prompt_ids: p, params: SamplingParams::greedy(8) };
    let batch: Vec<_> = prompts().into_iter().map(req).collect();
    let together = model.generate(&tok, &batch, &opts(), |_| {})?;
    for (r, c) in batch.iter().zip(&together) {
        let alone = model.generate(&tok, std::slice::from_ref(r), &opts(), |_| {})?;
        assert_eq!(alone[0].token_ids, c.token_ids);
        let d = max_abs_diff(&alone[0].logprobs, &c.logprobs);
        assert!(d < 1e-4, "{d}");
    }
    Ok(())
}

#[test]
fn seeds_make_sampling_reproducible() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    let req = |seed| GenerationRequest {
        prompt_ids: vec![72, 101],
        params: SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            top_k: 40,
            max_new_tokens: 12,
            seed: Some(seed),
            ..SamplingParams::default()
        },
    };
    let a = model.generate(&tok, &[req(5), req(6)], &opts(), |_| {})?;
    let b = model.generate(&tok, &[req(6), req(5)], &opts(), |_| {})?;
    assert_eq!(a[0].token_ids, b[1].token_ids, "same seed, same sample");
    assert_eq!(a[1].token_ids, b[0].token_ids);
    assert_ne!(a[0].token_ids, a[1].token_ids, "different seeds differ");
    Ok(())
}

#[test]
fn stop_tokens_stop_strings_and_streaming() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    let prompt = vec![104, 105, 32];
    let free = model.generate(
        &tok,
        &[GenerationRequest { prompt_ids: prompt.clone(), params: SamplingParams::greedy(16) }],
        &opts(),
        |_| {},
    )?;
    let free = &free[0];

    // A stop token ends the completion and is kept as its last token.
    let stop_at = free.token_ids[3];
    let first = free.token_ids.iter().position(|&t| t == stop_at).expect("present");
    let mut streamed = String::new();
    let out = model.generate(
        &tok,
        &[GenerationRequest { prompt_ids: prompt.clone(), params: SamplingParams::greedy(16) }],
        &GenerateOptions { eos_ids: vec![stop_at], pad_id: 0, max_batch: 0, ..Default::default() },
        |e| streamed.push_str(e.text),
    )?;
    assert_eq!(out[0].token_ids, free.token_ids[..=first].to_vec());
    assert_eq!(out[0].finish_reason, FinishReason::Stop);
    assert_eq!(out[0].stop, Some(StopReason::Token(stop_at)));
    assert_eq!(streamed, out[0].text);

    // A stop string cuts the text before it.
    let chars: Vec<(usize, char)> = free.text.char_indices().collect();
    assert!(chars.len() >= 6, "need some text: {:?}", free.text);
    let (start, end) = (chars[3].0, chars[5].0);
    let stop = free.text[start..end].to_string();
    let cut = free.text.find(&stop).expect("present");
    let mut streamed = String::new();
    let out = model.generate(
        &tok,
        &[GenerationRequest {
            prompt_ids: prompt,
            params: SamplingParams { stop_strings: vec![stop.clone()], ..SamplingParams::greedy(16) },
        }],
        &opts(),
        |e| streamed.push_str(e.text),
    )?;
    assert_eq!(out[0].text, free.text[..cut]);
    assert_eq!(out[0].stop, Some(StopReason::String(stop)));
    assert_eq!(streamed, out[0].text);
    assert!(out[0].token_ids.len() < free.token_ids.len());
    assert_eq!(out[0].token_ids[..], free.token_ids[..out[0].token_ids.len()]);
    Ok(())
}

#[test]
fn bad_requests_are_rejected_with_their_index() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    let ok = GenerationRequest { prompt_ids: vec![1], params: SamplingParams::greedy(1) };
    let empty = GenerationRequest { prompt_ids: vec![], params: SamplingParams::greedy(1) };
    let err = model.generate(&tok, &[ok.clone(), empty], &opts(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("request 1"), "{err}");
    let bad_p = GenerationRequest {
        prompt_ids: vec![1],
        params: SamplingParams { top_p: 0.0, ..SamplingParams::default() },
    };
    let err = model.generate(&tok, &[bad_p], &opts(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("top_p"), "{err}");
    let oov = GenerationRequest { prompt_ids: vec![100_000], params: SamplingParams::greedy(1) };
    assert!(model.generate(&tok, &[oov], &opts(), |_| {}).is_err());
    Ok(())
}

#[test]
fn a_model_with_nan_weights_refuses_to_sample_or_score() -> Result<()> {
    let (model, tok, _dir) = setup()?;
    let (name, var) =
        model.named_parameters().iter().find(|(n, _)| n.contains("mlp")).expect("an MLP weight");
    var.set(&(var.as_tensor().ones_like()? * f64::NAN)?)?;
    let requests = vec![GenerationRequest { prompt_ids: vec![72, 101], params: SamplingParams::greedy(3) }];
    let err = model.generate(&tok, &requests, &opts(), |_| {}).unwrap_err();
    assert!(matches!(err, swerl_model::Error::NonFiniteLogits { .. }), "{name}: {err}");
    assert!(err.to_string().contains("request 0"), "{err}");
    let batch = TokenBatch::from_prompt_completions(&[vec![72, 101]], &[vec![108, 108]], 0)?;
    let err = model.score(&batch, &ScoreOptions::default()).unwrap_err();
    assert!(matches!(err, swerl_model::Error::NonFiniteLogits { .. }), "{err}");
    Ok(())
}
