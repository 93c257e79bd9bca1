# Sourced by scripts that start `wsrelay serve` as a coproc:
#   read_ready FD LOG NAME
# reads wsrelay's stdout from FD until its ready line (skipping lines before
# it, such as a generated admin password; at most 30 s a line), then sets
# DATA and ADMIN (host:port). On failure prints LOG and exits.
read_ready() {
  local fd=$1 log=$2 name=$3 line ready=
  while read -r -t 30 line <&"$fd"; do
    case $line in "wsrelay ready"*) ready=$line; break ;; esac
  done
  [ -n "$ready" ] || { echo "$name: wsrelay did not start" >&2; cat "$log" >&2; exit 1; }
  DATA=$(sed -n 's/.*data=\([^ ]*\).*/\1/p' <<<"$ready")
  ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$ready")
}
