#!/bin/sh
# Test verifier: saves its stdin to $SDPO_TEST_OUT and its working directory to
# $SDPO_TEST_OUT.pwd, then scores 0.5 without feedback.
cat > "$SDPO_TEST_OUT"
pwd > "$SDPO_TEST_OUT.pwd"
echo '{"score": 0.5}'
