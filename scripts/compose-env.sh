#!/usr/bin/env bash
# Writes .env for docker-compose.yaml: the settings of .env.example with every secret freshly generated.
# An existing file is kept as it is: PostgreSQL keeps the passwords its volume was created with, and
# Airflow needs the same Fernet key to read what it encrypted.
#   scripts/compose-env.sh [PATH]      PATH defaults to .env beside docker-compose.yaml
# Needs only bash, coreutils and, for the Fernet key, python3 if it has `cryptography` (else coreutils).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$repo/.env}"

if [[ -e "$target" ]]; then
  echo "Kept the existing $target (delete it to generate new secrets)."
  # A .env copied from an earlier .env.example holds its published placeholder secrets.
  if grep -Eq '^[A-Z_]+=change-me' "$target"; then
    echo "WARNING: $target still holds published 'change-me' secrets: generate new ones (and change the" \
         "database passwords in PostgreSQL to match, or start over with 'docker compose down -v')." >&2
  fi
  exit 0
fi

# 64 random bytes (an HS512 JWT key should have at least 64: RFC 7518, 3.2), URL-safe base64 without
# padding: letters, digits, '-' and '_', safe inside connection URLs.
random_secret() {
  head -c 64 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'
}

# A Fernet key is 32 random bytes in URL-safe base64, padding kept.
fernet_key() {
  python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' 2>/dev/null \
    || head -c 32 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'
}

SECRETS=(
  POSTGRES_PASSWORD ANNOTATIONS_DB_PASSWORD MLFLOW_DB_PASSWORD REDIS_PASSWORD
  AIRFLOW_API_SECRET_KEY AIRFLOW_JWT_SECRET AIRFLOW_FERNET_KEY AIRFLOW_ADMIN_PASSWORD
)

is_secret() {
  [[ " ${SECRETS[*]} " == *" $1 "* ]]
}

new_secret() {
  if [[ "$1" == AIRFLOW_FERNET_KEY ]]; then fernet_key; else random_secret; fi
}

# .env.example leaves each secret empty ("NAME="): fill those, copy every other line as it is.
fill_secrets() {
  local line name
  while IFS= read -r line || [[ -n "$line" ]]; do
    name="${line%%=*}"
    if [[ "$line" == "$name=" ]] && is_secret "$name"; then
      line="$name=$(new_secret "$name")"
    fi
    printf '%s\n' "$line"
  done < "$repo/.env.example"
}

# Staged beside the target first, so a failure leaves no half-written .env; noclobber refuses a file
# that appeared meanwhile.
umask 077
staged="$(mktemp "$target.XXXXXX")"
trap 'rm -f "$staged"' EXIT
fill_secrets > "$staged"
set -o noclobber
cat "$staged" > "$target"
echo "Wrote $target (mode 600) with generated secrets; the Airflow UI password is AIRFLOW_ADMIN_PASSWORD in it."
