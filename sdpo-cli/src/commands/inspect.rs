//! `sdpo inspect MODEL`: architecture, parameter count, vocabulary, special tokens, stop ids
//! and chat template.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_models::arch::RopeScaling;
use sdpo_models::{CausalLm, Tokenizer};

use crate::backend::Dispatch;
use crate::error::CliError;
use crate::models::{load_model, ModelRef};

/// The `inspect` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, a run folder, or a Hugging Face Hub id
    /// ORG/NAME[:FILE][@REVISION] (fetched into the Hugging Face cache).
    pub model: String,
}

/// `inspect` on a parsed model reference.
pub struct Inspect(pub ModelRef);

impl Dispatch for Inspect {
    type Output = String;

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<String, CliError> {
        let loaded = load_model::<B::InnerBackend>(&self.0, &device)?;
        Ok(describe(&loaded.model, &loaded.tokenizer, &loaded.origin))
    }
}

/// The report `inspect` prints.
pub fn describe<B: Backend>(model: &CausalLm<B>, tokenizer: &Tokenizer, origin: &str) -> String {
    let c = &model.config;
    let params = model.num_params();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<24} {v}\n"));
    line("model", origin.to_string());
    line("architecture", c.model_type.clone());
    line("parameters", format!("{params} ({})", human(params)));
    line("layers", c.num_layers.to_string());
    line("hidden size", c.hidden_size.to_string());
    line("intermediate size", c.intermediate_size.to_string());
    line(
        "attention heads",
        format!(
            "{} (key/value heads {}, head dim {})",
            c.num_heads, c.num_kv_heads, c.head_dim
        ),
    );
    line("rope theta", c.rope_theta.to_string());
    let scaling = match &c.rope_scaling {
        RopeScaling::None => "none".to_string(),
        other => format!("{other:?}"),
    };
    line("rope scaling", scaling);
    line("max positions", c.max_position_embeddings.to_string());
    line("rms norm eps", c.rms_norm_eps.to_string());
    line("tied embeddings", c.tie_word_embeddings.to_string());
    let mut flags = Vec::new();
    if c.qkv_bias {
        flags.push("qkv bias");
    }
    if c.o_bias {
        flags.push("o bias");
    }
    if c.mlp_bias {
        flags.push("mlp bias");
    }
    if c.qk_norm {
        flags.push("q/k norm");
    }
    line(
        "other",
        if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join(", ")
        },
    );
    if let Some(w) = c.sliding_window {
        line("sliding window", w.to_string());
    }
    line(
        "vocabulary",
        format!(
            "{} (model embedding rows {})",
            tokenizer.vocab_size(),
            c.vocab_size
        ),
    );
    let special = |name: Option<&str>| match name {
        Some(t) => match tokenizer.token_to_id(t) {
            Some(id) => format!("{t:?} (id {id})"),
            None => format!("{t:?}"),
        },
        None => "-".to_string(),
    };
    line("bos token", special(tokenizer.bos_token()));
    line("eos token", special(tokenizer.eos_token()));
    line("pad token", special(tokenizer.pad_token()));
    line("unk token", special(tokenizer.unk_token()));
    let stops: Vec<String> = tokenizer
        .eos_token_ids()
        .iter()
        .map(|&id| match tokenizer.id_to_token(id) {
            Some(t) => format!("{id} {t:?}"),
            None => id.to_string(),
        })
        .collect();
    line(
        "stop ids",
        if stops.is_empty() {
            "-".into()
        } else {
            stops.join(", ")
        },
    );
    match tokenizer.chat_template() {
        Some(t) => out.push_str(&format!("chat template:\n{t}\n")),
        None => out.push_str("chat template:           none\n"),
    }
    out
}

/// `1234567` → `1.23 M`.
fn human(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} K", n / 1e3)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_counts() {
        assert_eq!(human(999), "999");
        assert_eq!(human(213_504), "213.5 K");
        assert_eq!(human(134_515_008), "134.52 M");
        assert_eq!(human(7_000_000_000), "7.00 B");
    }

    #[test]
    fn describes_the_builtin_model() {
        type B = burn::backend::NdArray<f32>;
        let (model, tok) = crate::models::builtin_model::<B>(0, &Default::default()).unwrap();
        let text = describe(&model, &tok, "builtin");
        let params = model.num_params();
        assert!(
            text.contains(&format!("parameters               {params} ")),
            "{text}"
        );
        assert!(text.contains("architecture             llama"), "{text}");
        assert!(
            text.contains("eos token                \"<eos>\" (id 1)"),
            "{text}"
        );
        assert!(
            text.contains("chat template:\n{% for m in messages %}"),
            "{text}"
        );
    }
}
