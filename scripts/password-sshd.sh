#!/usr/bin/env bash
# password-sshd.sh — a private OpenSSH server on loopback that takes only passwords, for testing password login.
#
# Usage: password-sshd.sh up | down
# Env:   DIR=/tmp/cmdb-ssh-password-test  PORT=2323  ADDR=127.0.0.2  PW_USER=cmdb-sshpw
# After `up`, DIR holds: password (0600, the user's fresh random password), known_hosts (pins ADDR:PORT), sshd.pid.
# The local user PW_USER is created if missing (no home outside DIR, shell /bin/sh) and gets a new random password on
# every `up`; the password goes to chpasswd on stdin from a shell builtin, so it never appears in any process's argv.
# UsePAM is off, so sshd checks /etc/shadow itself; only PW_USER may log in, only by password.
set -euo pipefail
cmd=${1:-up}
DIR=${DIR:-/tmp/cmdb-ssh-password-test}; PORT=${PORT:-2323}; ADDR=${ADDR:-127.0.0.2}; PW_USER=${PW_USER:-cmdb-sshpw}

down() { [ -f "$DIR/sshd.pid" ] && kill "$(cat "$DIR/sshd.pid")" 2>/dev/null; rm -f "$DIR/sshd.pid"; }
case $cmd in
  down) down; exit 0 ;;
  up) ;;
  *) echo "usage: $0 up | down" >&2; exit 2 ;;
esac

if ! [ -x /usr/sbin/sshd ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi
down
mkdir -p "$DIR/home" /run/sshd; chmod 700 "$DIR"; chmod 755 /run/sshd
[ -f "$DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C password-host -f "$DIR/ssh_host_ed25519_key"
id "$PW_USER" >/dev/null 2>&1 || useradd -M -d "$DIR/home" -s /bin/sh "$PW_USER"
chown "$PW_USER" "$DIR/home"
pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
( umask 077; printf '%s\n' "$pw" > "$DIR/password" )
printf '%s:%s\n' "$PW_USER" "$pw" | chpasswd
echo "[$ADDR]:$PORT $(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" > "$DIR/known_hosts"
cat > "$DIR/sshd.conf" <<CFG
Port $PORT
ListenAddress $ADDR
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AllowUsers $PW_USER
PermitRootLogin no
PasswordAuthentication yes
PubkeyAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
LogLevel ERROR
CFG
/usr/sbin/sshd -t -f "$DIR/sshd.conf"
/usr/sbin/sshd -f "$DIR/sshd.conf" -E "$DIR/sshd.log"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/$ADDR/$PORT") 2>/dev/null && break; sleep 0.1; done
echo "up: password-only sshd on $ADDR:$PORT for $PW_USER; password in $DIR/password"
