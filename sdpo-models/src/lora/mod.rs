//! LoRA adapters (PEFT names) over a frozen base; merging; several adapter sets on one base.
