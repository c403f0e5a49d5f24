//! Token batches for scoring and training: prompts (left-padded) followed by completions
//! (right-padded), as GRPO trainers lay them out, plus the positions that are scored.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// A padded batch of token sequences whose last `completion_len` positions are scored.
///
/// Sequence `b` is `ids[b * seq .. (b + 1) * seq]`; `attention` marks real (non-padding)
/// tokens. The scored window is the last `completion_len` positions of every row; within it
/// `completion_mask` marks the tokens whose log-probability is wanted. The token at position
/// `t` is scored from the model's output at position `t - 1`, so that position must be real.
/// Position ids count real tokens only, so left padding does not shift them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBatch {
    ids: Vec<u32>,
    attention: Vec<bool>,
    batch: usize,
    seq: usize,
    completion_len: usize,
    completion_mask: Vec<bool>,
}

impl TokenBatch {
    /// Lays out `prompts[i] + completions[i]` for every `i`: prompts left-padded to the longest
    /// prompt, completions right-padded to the longest completion, padding with `pad_id`. Every
    /// completion token is scored.
    pub fn from_prompt_completions<P: AsRef<[u32]>, C: AsRef<[u32]>>(
        prompts: &[P],
        completions: &[C],
        pad_id: u32,
    ) -> Result<Self> {
        if prompts.len() != completions.len() {
            return Err(Error::arg(
                "completions",
                format!("{} prompts but {} completions", prompts.len(), completions.len()),
            ));
        }
        if prompts.is_empty() {
            return Err(Error::arg("prompts", "empty batch"));
        }
        let p_len = prompts.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
        let c_len = completions.iter().map(|c| c.as_ref().len()).max().unwrap_or(0);
        let seq = p_len + c_len;
        let batch = prompts.len();
        let mut ids = Vec::with_capacity(batch * seq);
        let mut attention = Vec::with_capacity(batch * seq);
        let mut completion_mask = Vec::with_capacity(batch * c_len);
        for (p, c) in prompts.iter().zip(completions) {
            let (p, c) = (p.as_ref(), c.as_ref());
            let pad = p_len - p.len();
            ids.extend(std::iter::repeat_n(pad_id, pad));
            attention.extend(std::iter::repeat_n(false, pad));
            ids.extend_from_slice(p);
            attention.extend(std::iter::repeat_n(true, p.len()));
            ids.extend_from_slice(c);
            ids.extend(std::iter::repeat_n(pad_id, c_len - c.len()));
            attention.extend(std::iter::repeat_n(true, c.len()));
            attention.extend(std::iter::repeat_n(false, c_len - c.len()));
            completion_mask.extend(std::iter::repeat_n(true, c.len()));
            completion_mask.extend(std::iter::repeat_n(false, c_len - c.len()));
        }
        Self::new(ids, attention, batch, c_len, Some(completion_mask))
    }

    /// Scores every token of each sequence but the first (`log p(t_i | t_<i)` for `i >= 1`);
    /// sequences are right-padded with `pad_id`.
    pub fn from_sequences<S: AsRef<[u32]>>(sequences: &[S], pad_id: u32) -> Result<Self> {
        let split: Vec<(&[u32], &[u32])> = sequences
            .iter()
            .map(|s| {
                let s = s.as_ref();
                s.split_at(s.len().min(1))
            })
            .collect();
        if let Some(i) = split.iter().position(|(p, _)| p.is_empty()) {
            return Err(Error::arg("sequences", format!("sequence {i} is empty")));
        }
        let prompts: Vec<&[u32]> = split.iter().map(|(p, _)| *p).collect();
        let completions: Vec<&[u32]> = split.iter().map(|(_, c)| *c).collect();
        Self::from_prompt_completions(&prompts, &completions, pad_id)
    }

    /// A batch from already padded rows: `ids` and `attention` are `batch * seq` row-major,
    /// the last `completion_len` positions form the scored window, and `completion_mask`
    /// (`batch * completion_len`) selects scored tokens (default: the real tokens of the window).
    pub fn new(
        ids: Vec<u32>,
        attention: Vec<bool>,
        batch: usize,
        completion_len: usize,
        completion_mask: Option<Vec<bool>>,
    ) -> Result<Self> {
        if batch == 0 || ids.is_empty() {
            return Err(Error::arg("ids", "empty batch"));
        }
        if !ids.len().is_multiple_of(batch) || attention.len() != ids.len() {
            return Err(Error::arg(
                "ids",
                format!("{} ids and {} mask entries do not form {batch} rows", ids.len(), attention.len()),
            ));
        }
        let seq = ids.len() / batch;
        if completion_len >= seq {
            return Err(Error::arg(
                "completion_len",
                format!("{completion_len} scored positions need a sequence longer than {seq}"),
            ));
        }
        let completion_mask = match completion_mask {
            Some(m) if m.len() != batch * completion_len => {
                return Err(Error::arg(
                    "completion_mask",
                    format!("expected {} entries, found {}", batch * completion_len, m.len()),
                ));
            }
            Some(m) => m,
            None => (0..batch)
                .flat_map(|b| attention[b * seq + seq - completion_len..(b + 1) * seq].to_vec())
                .collect(),
        };
        for b in 0..batch {
            for j in 0..completion_len {
                let t = seq - completion_len + j;
                if completion_mask[b * completion_len + j] && !attention[b * seq + t - 1] {
                    return Err(Error::arg(
                        "completion_mask",
                        format!("row {b}: scored position {t} follows a padding position (empty prompt?)"),
                    ));
                }
                if completion_mask[b * completion_len + j] && !attention[b * seq + t] {
                    return Err(Error::arg(
                        "completion_mask",
                        format!("row {b}: scored position {t} is padding"),
                    ));
                }
            }
        }
        Ok(Self { ids, attention, batch, seq, completion_len, completion_mask })
    }

    /// Builds a batch from tensors: `input_ids` `(batch, seq)` (u32 or i64), `attention_mask`
    /// `(batch, seq)` (any dtype, non-zero = real token), scoring the last `completion_len`
    /// positions where `completion_mask` `(batch, completion_len)` is non-zero (default: real
    /// tokens).
    pub fn from_tensors(
        input_ids: &Tensor,
        attention_mask: &Tensor,
        completion_len: usize,
        completion_mask: Option<&Tensor>,
    ) -> Result<Self> {
        let (batch, _) = input_ids.dims2()?;
        let ids: Vec<u32> = input_ids.to_dtype(candle_core::DType::U32)?.flatten_all()?.to_vec1()?;
        let flags = |t: &Tensor| -> Result<Vec<bool>> {
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|x| x != 0.0)
                .collect())
        };
        let attention = flags(attention_mask)?;
        let completion_mask = completion_mask.map(flags).transpose()?;
        Self::new(ids, attention, batch, completion_len, completion_mask)
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.seq
    }

    /// Length of the scored window.
    pub fn completion_len(&self) -> usize {
        self.completion_len
    }

    /// Number of scored tokens.
    pub fn num_scored(&self) -> usize {
        self.completion_mask.iter().filter(|&&m| m).count()
    }

    /// Number of real (non-padding) tokens.
    pub fn num_tokens(&self) -> usize {
        self.attention.iter().filter(|&&m| m).count()
    }

    /// Token ids, row-major `batch * seq`.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Real-token flags, row-major `batch * seq`.
    pub fn attention(&self) -> &[bool] {
        &self.attention
    }

    /// Scored-token flags, row-major `batch * completion_len`.
    pub fn completion_mask(&self) -> &[bool] {
        &self.completion_mask
    }

    /// Position ids: the number of real tokens before each position (0 for padding).
    pub fn positions(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.ids.len());
        for row in self.attention.chunks(self.seq) {
            let mut n = 0u32;
            for &real in row {
                out.push(if real { n } else { 0 });
                n += u32::from(real);
            }
        }
        out
    }

    /// Flat indices (into `batch * seq`) of the model outputs that predict scored tokens, the
    /// scored token ids, and their flat indices into `batch * completion_len`.
    pub(crate) fn scored_rows(&self) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let (mut rows, mut targets, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..self.batch {
            for j in 0..self.completion_len {
                if self.completion_mask[b * self.completion_len + j] {
                    let t = self.seq - self.completion_len + j;
                    rows.push((b * self.seq + t - 1) as u32);
                    targets.push(self.ids[b * self.seq + t]);
                    slots.push((b * self.completion_len + j) as u32);
                }
            }
        }
        (rows, targets, slots)
    }

    /// The scored-token mask as an f32 `(batch, completion_len)` tensor.
    pub fn completion_mask_tensor(&self, device: &Device) -> Result<Tensor> {
        let m: Vec<f32> = self.completion_mask.iter().map(|&x| f32::from(u8::from(x))).collect();
        Ok(Tensor::from_vec(m, (self.batch, self.completion_len), device)?)
    }

    /// Whether any row has padding (otherwise masks can be skipped).
    pub(crate) fn has_padding(&self) -> bool {
        self.attention.iter().any(|&a| !a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_prompts_left_and_completions_right() {
        let b = TokenBatch::from_prompt_completions(&[vec![1, 2, 3], vec![4]], &[vec![5], vec![6, 7]], 0)
            .unwrap();
        assert_eq!(b.seq_len(), 5);
        assert_eq!(b.ids(), &[1, 2, 3, 5, 0, 0, 0, 4, 6, 7]);
        assert_eq!(b.attention(), &[true, true, true, true, false, false, false, true, true, true]);
        assert_eq!(b.completion_mask(), &[true, false, true, true]);
        assert_eq!(b.positions(), vec![0, 1, 2, 3, 0, 0, 0, 0, 1, 2]);
        let (rows, targets, slots) = b.scored_rows();
        assert_eq!(rows, vec![2, 7, 8]);
        assert_eq!(targets, vec![5, 6, 7]);
        assert_eq!(slots, vec![0, 2, 3]);
        assert_eq!(b.num_scored(), 3);
    }

    #[test]
    fn rejects_empty_prompts_and_bad_shapes() {
        let err =
            TokenBatch::from_prompt_completions(&[vec![1], vec![]], &[vec![5], vec![6]], 0).unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
        assert!(TokenBatch::from_sequences(&[vec![1, 2], vec![]], 0).is_err());
        assert!(TokenBatch::new(vec![1, 2, 3], vec![true; 3], 2, 1, None).is_err());
        assert!(TokenBatch::new(vec![1, 2], vec![true; 2], 1, 2, None).is_err());
    }
}
