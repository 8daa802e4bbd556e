#!/bin/sh
# Runs a test of torchless serve with real clients from npm (the openai
# package; puppeteer-core driving Debian's chromium for the chat page).
# Usage: tests/server/run.sh api|page TORCHLESS MODEL BUILD_DIR
# The npm packages of tests/server/package.json are installed at test time
# into BUILD_DIR/server_peer (kept between runs). Exit 77 (SKIPPED) only when
# node/npm, or for the page test chromium, is absent.
set -e
mode=${1:?usage: run.sh api|page TORCHLESS MODEL BUILD_DIR}
cli=${2:?}
model=${3:?}
build=${4:?}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "SKIPPED: node and npm are needed for the torchless serve tests (apt-get install nodejs npm)"
  exit 77
fi
if [ "$mode" = page ]; then
  chromium=${TL_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
  if [ -z "$chromium" ]; then
    echo "SKIPPED: chromium is needed for the chat page test (apt-get install chromium)"
    exit 77
  fi
  export TL_CHROMIUM="$chromium"
fi
peer="$build/server_peer"
mkdir -p "$peer"
# one installer at a time (ctest -j runs both tests together)
(
  flock 9
  if ! cmp -s "$here/package.json" "$peer/package.json" || [ ! -d "$peer/node_modules/openai" ] ||
    [ ! -d "$peer/node_modules/puppeteer-core" ]; then
    cp "$here/package.json" "$peer/package.json"
    echo "installing the npm packages of tests/server/package.json into $peer"
    (cd "$peer" && npm install --no-audit --no-fund --loglevel=error) || {
      echo "FAILED: npm install of the test clients (network?)"
      exit 1
    }
  fi
) 9>"$peer/.lock"
export TL_SERVER_PEER="$peer"
exec node "$here/test_$mode.mjs" "$cli" "$model" "$build"
