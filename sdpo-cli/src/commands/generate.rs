//! `sdpo generate MODEL PROMPT`: one completion of a prompt, chat template applied.

use burn::tensor::Device;
use sdpo_train::TrainBackend;

use sdpo_core::ChatMessage;
use sdpo_models::generate::{generate, left_pad, sampler_rng, SamplingParams};
use sdpo_models::Tokenizer;

use crate::backend::Dispatch;
use crate::error::CliError;
use crate::models::{load_model, ModelRef};

/// The `generate` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// `builtin`, a Hugging Face folder, a .gguf file, a run folder, or a Hugging Face Hub id
    /// ORG/NAME[:FILE][@REVISION] (fetched into the Hugging Face cache).
    pub model: String,
    /// The user message.
    pub prompt: String,
    /// An optional system message before it.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Longest completion in tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Repetition penalty (> 1 discourages tokens already in the text; 1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Float precision of the model's weights and activations: f32 (default), f16 or bf16;
    /// refused, naming the device, where the backend cannot run it. Logits stay f32.
    #[arg(long, value_name = "f32|f16|bf16")]
    pub precision: Option<sdpo_models::Precision>,
}

/// `generate` with a parsed model reference.
pub struct Generate {
    /// The model.
    pub model: ModelRef,
    /// The arguments.
    pub args: GenerateArgs,
}

/// The text fed to the model: the chat template rendered with a generation prompt (or the
/// messages' contents joined by newlines for a tokenizer without one), or `prompt` as is.
///
/// # Errors
/// [`CliError::Tokenizer`] when the template fails to render.
pub fn prompt_text(tokenizer: &Tokenizer, args: &GenerateArgs) -> Result<String, CliError> {
    if args.raw {
        return Ok(args.prompt.clone());
    }
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: args.prompt.clone(),
    });
    if tokenizer.chat_template().is_some() {
        Ok(tokenizer.apply_chat_template(&messages, true)?)
    } else {
        Ok(messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

impl Dispatch for Generate {
    type Output = String;

    fn run<B: TrainBackend>(self, device: Device<B>) -> Result<String, CliError> {
        let args = self.args;
        let params = SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            max_new_tokens: args.max_new_tokens,
            repetition_penalty: args.repetition_penalty,
            ..SamplingParams::default()
        };
        params.validate()?;
        let precision = args.precision.unwrap_or_default();
        precision.check::<B::InnerBackend>(&device)?;
        let loaded = load_model::<B::InnerBackend>(&self.model, &device)?;
        let model = precision.cast(loaded.model);
        let tokenizer = &loaded.tokenizer;
        let text = prompt_text(tokenizer, &args)?;
        let ids = tokenizer.encode(&text, args.raw)?;
        if ids.is_empty() {
            return Err(CliError::Argument {
                arg: "PROMPT".into(),
                reason: "encodes to no tokens".into(),
            });
        }
        let params = SamplingParams {
            stop_token_ids: tokenizer.eos_token_ids().to_vec(),
            ..params
        };
        let pad = tokenizer
            .pad_token_id()
            .or_else(|| tokenizer.eos_token_ids().first().copied())
            .unwrap_or(0);
        let (p_ids, p_mask) = left_pad::<B::InnerBackend>(&[ids], pad, &device);
        let mut rng = sampler_rng(args.seed);
        let out = generate(&model, p_ids, p_mask, &params, pad, &mut rng)?;
        let tokens = out.tokens.into_iter().next().unwrap_or_default();
        Ok(tokenizer.decode(&tokens, true)?)
    }
}
