#!/usr/bin/env bash
# Installs mambad as a socket-activated systemd service (see docs/systemd.md).
#
#   sudo systemd/install.sh [--binary PATH] [--model DIR] [--openblas-coretype NAME] [--no-start]
#        systemd/install.sh --user [same options]
#
# System: /usr/local/bin/mambad, /etc/systemd/system/mambad.{socket,service},
#   /etc/sysusers.d/mambad.conf (group mambad: who may connect), /etc/mambad/mambad.conf
#   (kept if present), a drop-in when the model is under /home or an OpenBLAS core type is
#   given (default: $OPENBLAS_CORETYPE); then `systemctl enable --now mambad.socket`.
# --user: ~/.local/bin/mambad, ~/.config/systemd/user/mambad.{socket,service},
#   ~/.config/mambad/mambad.conf; then `systemctl --user enable --now mambad.socket`
#   (socket: $XDG_RUNTIME_DIR/mambad.sock).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
binary="$here/../.build/release/mambad"
model=""
user=0
start=1
coretype="${OPENBLAS_CORETYPE:-}"

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --user) user=1 ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift ;;
        --model) [ $# -ge 2 ] || die "--model needs a folder"; model="$2"; shift ;;
        --openblas-coretype) [ $# -ge 2 ] || die "--openblas-coretype needs a name (e.g. Haswell)"; coretype="$2"; shift ;;
        --no-start) start=0 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

[ -x "$binary" ] || die "no mambad binary at $binary: run 'swift build -c release' first, or pass --binary PATH"
if [ -n "$model" ]; then
    [ -f "$model/config.json" ] || die "$model is not a model folder (no config.json)"
    model="$(cd "$model" && pwd)"
    if [ -n "$(find "$model" -maxdepth 1 -type f ! -perm -0004 -print -quit)" ]; then
        echo "warning: files in $model are not readable by others; the system service runs as a transient user (chmod -R o+rX)" >&2
    fi
fi

# Writes the config file unless one exists; --model sets its model line.
write_config() {
    local conf="$1"
    if [ -e "$conf" ]; then
        echo "keeping $conf"
        [ -z "$model" ] || echo "note: set 'model = $model' in $conf yourself"
    else
        install -D -m 0644 "$here/mambad.conf" "$conf"
        [ -z "$model" ] || sed -i "s|^model = .*|model = $model|" "$conf"
        echo "wrote $conf"
    fi
}

if [ "$user" = 1 ]; then
    [ "$(id -u)" != 0 ] || die "--user installs for the calling user; run it without sudo"
    config="${XDG_CONFIG_HOME:-$HOME/.config}"
    install -D -m 0755 "$binary" "$HOME/.local/bin/mambad"
    install -D -m 0644 "$here/user/mambad.socket" "$config/systemd/user/mambad.socket"
    install -D -m 0644 "$here/user/mambad.service" "$config/systemd/user/mambad.service"
    write_config "$config/mambad/mambad.conf"
    if [ -n "$coretype" ]; then
        printf '[Service]\nEnvironment=OPENBLAS_CORETYPE=%s\n' "$coretype" |
            install -D -m 0644 /dev/stdin "$config/systemd/user/mambad.service.d/openblas.conf"
    fi
    systemctl --user daemon-reload
    if [ "$start" = 1 ]; then systemctl --user enable --now mambad.socket; else systemctl --user enable mambad.socket; fi
    echo "mambad listens on ${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/mambad.sock"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "the system install needs root (or use --user)"
install -D -m 0755 "$binary" /usr/local/bin/mambad
install -D -m 0644 "$here/mambad.socket" /etc/systemd/system/mambad.socket
install -D -m 0644 "$here/mambad.service" /etc/systemd/system/mambad.service
install -D -m 0644 "$here/mambad.sysusers" /etc/sysusers.d/mambad.conf
systemd-sysusers /etc/sysusers.d/mambad.conf
write_config /etc/mambad/mambad.conf
dropins=/etc/systemd/system/mambad.service.d
case "$model" in
    /home/*|/root/*|/run/user/*)
        printf '[Service]\n# ProtectHome= hides the model'"'"'s folder: show just that folder, read-only\nProtectHome=tmpfs\nBindReadOnlyPaths=%s\n' \
            "$model" | install -D -m 0644 /dev/stdin "$dropins/model.conf"
        echo "wrote $dropins/model.conf (BindReadOnlyPaths=$model)" ;;
esac
if [ -n "$coretype" ]; then
    printf '[Service]\nEnvironment=OPENBLAS_CORETYPE=%s\n' "$coretype" | install -D -m 0644 /dev/stdin "$dropins/openblas.conf"
    echo "wrote $dropins/openblas.conf (OPENBLAS_CORETYPE=$coretype)"
fi
systemctl daemon-reload
if [ "$start" = 1 ]; then systemctl enable --now mambad.socket; else systemctl enable mambad.socket; fi
echo "mambad listens on /run/mambad/mambad.sock; let a user connect with: usermod -aG mambad USER"
