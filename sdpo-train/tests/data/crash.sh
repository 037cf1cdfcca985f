#!/bin/sh
# Test verifier that crashes: a message on stderr and exit status 3.
cat > /dev/null
echo "Traceback: something broke in the verifier" >&2
exit 3
