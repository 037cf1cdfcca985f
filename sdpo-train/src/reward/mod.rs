//! Rewards: scores with optional textual feedback, weighted sums, built-in verifiers.
