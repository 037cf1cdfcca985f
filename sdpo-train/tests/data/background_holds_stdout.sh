#!/bin/sh
# Test verifier that answers, exits, and leaves a background process holding
# stdout open.
echo '{"score": 1.0}'
sleep 60 &
