//! Scoring passes for training: log-probs, top-k and gathers at the response positions only.
