#!/usr/bin/env bash
# Installs usernode's npm packages (npm ci, from the committed lock file) and
# builds it into dist/, as the user who will run it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "usernode built: start it with bin/usernode run"
