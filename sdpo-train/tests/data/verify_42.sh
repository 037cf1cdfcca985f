#!/bin/sh
# Test verifier for tests/rewards.rs: reads one JSON object on stdin and scores 1
# when its "completion" contains 42, else 0 with feedback. Completions in the
# tests hold no double quotes, so sed can pick the field out.
input=$(cat)
completion=$(printf '%s' "$input" | sed -n 's/.*"completion":"\([^"]*\)".*/\1/p')
case "$completion" in
  *42*) echo '{"score": 1.0, "feedback": null}' ;;
  *) echo '{"score": 0.0, "feedback": "the product is wrong"}' ;;
esac
