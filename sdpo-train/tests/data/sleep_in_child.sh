#!/bin/sh
# Test verifier that never answers: a child process sleeps far past any test
# timeout (its pid goes to $SDPO_TEST_PID), so killing only this shell would
# leave the sleep running.
sleep 60 &
echo $! > "$SDPO_TEST_PID"
wait
