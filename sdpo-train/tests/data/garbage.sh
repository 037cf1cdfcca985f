#!/bin/sh
# Test verifier whose stdout is not JSON (argument 1 chooses which kind).
cat > /dev/null
case "$1" in
  extra-key) echo '{"score": 1.0, "feedbak": "typo"}' ;;
  no-score) echo '{"feedback": "forgot the score"}' ;;
  *) echo "score: 1" ;;
esac
