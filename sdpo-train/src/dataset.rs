//! JSONL datasets: prompts (text or chat messages) with any other fields, seeded shuffling.
