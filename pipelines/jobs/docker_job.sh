#!/usr/bin/env bash
# The one-shot job of docker-compose.yml (service `pipeline`): an interaction log -> prepared
# dataset -> SASRec run -> verified TorchScript artifact -> user histories in Redis, all under
# $RECSYS_ARTIFACTS (the shared `artifacts` volume) where the `server` service reads the artifact
# and the bearer tokens it accepts ($RECSYS_ARTIFACTS/tokens, made on the first run).
#
# Environment (every variable optional):
#   RECSYS_ARTIFACTS     output folder                          (default /artifacts)
#   RECSYS_REDIS_URL     Redis to load the histories into       (default redis://redis:6379/0)
#   RECSYS_LOG           your own interaction log instead of a synthetic one: a path, relative
#                        to /input (the folder compose mounts from RECSYS_INPUT_DIR) or absolute
#   RECSYS_PREPARE_ARGS  extra `recsys prepare` flags, e.g. "--format user-item" or
#                        "--user-col uid --min-user-interactions 1" (later flags win)
#   RECSYS_TRAIN_CONFIG  experiment YAML                        (default pipelines/configs/demo.yaml)
#   RECSYS_TRAIN_ARGS    extra `recsys train` flags, e.g. "--max-epochs 3"
# Every step replaces its previous output, so running the job again rebuilds everything.
set -euo pipefail

pipelines="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
artifacts="${RECSYS_ARTIFACTS:-/artifacts}"
redis_url="${RECSYS_REDIS_URL:-redis://redis:6379/0}"
config="${RECSYS_TRAIN_CONFIG:-$pipelines/configs/demo.yaml}"
read -r -a prepare_args <<<"${RECSYS_PREPARE_ARGS:-}"
read -r -a train_args <<<"${RECSYS_TRAIN_ARGS:-}"

# The server's bearer tokens (--auth-token-file): made once and kept, so that clients keep
# working when the job runs again. The first line is a read token (what `recsys recommend`
# sends), the second a write token (RecordInteractions, DeleteUserData).
tokens="$artifacts/tokens"
if [[ ! -s "$tokens" ]]; then
    mkdir -p "$artifacts"
    (
        umask 077
        new_token() { python -c 'import secrets; print(secrets.token_urlsafe(32))'; }
        printf 'read:%s\nwrite:%s\n' "$(new_token)" "$(new_token)" >"$tokens.tmp"
        mv "$tokens.tmp" "$tokens"
    )
    echo "== made the server's tokens: $tokens (read, then write)"
fi

if [[ -n "${RECSYS_LOG:-}" ]]; then
    log="$RECSYS_LOG"
    [[ "$log" == /* ]] || log="/input/$log"
    if [[ ! -f "$log" ]]; then
        echo "error: RECSYS_LOG: no file at $log (mount its folder with RECSYS_INPUT_DIR)" >&2
        exit 2
    fi
    echo "== 1/5 your interaction log: $log"
else
    log="$artifacts/log.parquet"
    echo "== 1/5 synthesize an interaction log: $log"
    recsys synth --out "$log" --users 2000 --items 500 --events 40000 --seed 0 --overwrite
fi

echo "== 2/5 prepare the dataset: $artifacts/data"
recsys prepare --input "$log" --out "$artifacts/data" \
    --min-user-interactions 5 --min-item-interactions 5 --split leave-one-out --overwrite \
    "${prepare_args[@]}"

echo "== 3/5 train SASRec ($config): $artifacts/run"
recsys train --data "$artifacts/data" --out "$artifacts/run" --config "$config" --overwrite \
    "${train_args[@]}"

echo "== 4/5 export the best checkpoint: $artifacts/artifact"
recsys export --checkpoint "$artifacts/run/checkpoints/best.ckpt" --data "$artifacts/data" \
    --out "$artifacts/artifact" --overwrite

echo "== 5/5 load the user histories into Redis"
recsys load-features --data "$artifacts/data" --redis-url "$redis_url"
