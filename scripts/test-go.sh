#!/usr/bin/env bash
# The Go package (netkit-ffi/go) and the Go examples (examples/go), run by scripts/test.sh:
# builds libnetkit.a in release mode (the package links target/release/libnetkit.a), runs
# `go vet`, `go test -race` (real work in namespaces the tests create; root) and both
# examples. Offline: no Go module is downloaded (the package has no dependencies).
#
# Prints a cargo-style line `test result: ok. P passed; F failed; …` that scripts/test.sh
# counts; Go tests that skipped are appended to $NETKIT_SKIP_LOG (and counted in P, as cargo
# counts a reported skip, so the total stays right). Without a `go` command it reports one
# skip and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
skip_log="${NETKIT_SKIP_LOG:-/dev/null}"

if ! command -v go >/dev/null 2>&1; then
  echo "SKIP go_package: no go command (apt-get install golang-go)" | tee -a "$skip_log" >&2
  echo "test result: ok. 1 passed; 0 failed; 0 ignored"
  exit 0
fi

unformatted=$(gofmt -l netkit-ffi/go examples/go)
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted: $unformatted (run gofmt -w)" >&2
  exit 1
fi

cargo build --release -p netkit-ffi

export GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on GOTOOLCHAIN=local
export GOCACHE="$root/target/go/cache" GOPATH="$root/target/go/path"
mkdir -p "$GOCACHE" "$GOPATH"

out="$root/target/go/test-output.txt"
status=0
(cd netkit-ffi/go && go vet ./... && go test -race -count=1 -v ./...) 2>&1 | tee "$out" || status=1

passed=$(grep -c '^--- PASS' "$out" || true)
failed=$(grep -c '^--- FAIL' "$out" || true)
skipped=$(grep -c '^--- SKIP' "$out" || true)
# A skipped test's reason is the line before its `--- SKIP: Name` line.
awk '/^--- SKIP: / { why = prev; sub(/^ *[^ :]+:[0-9]+: */, "", why); print "SKIP go::" $3 ": " why } { prev = $0 }' \
  "$out" >> "$skip_log"

# The README's first Go program compiles (in a module of its own, as a user would have it).
readme="$root/target/go/readme"
mkdir -p "$readme"
awk '/^```go$/ { on = 1; next } /^```$/ { if (on) exit } on' README.md > "$readme/main.go"
printf 'module readme\n\ngo 1.19\n\nrequire netkit.dev/netkit v0.0.0\n\nreplace netkit.dev/netkit => %s/netkit-ffi/go\n' \
  "$root" > "$readme/go.mod"
if (cd "$readme" && go build -o /dev/null .); then
  passed=$((passed + 1))
else
  echo "FAILED: the README's Go program does not build" >&2
  failed=$((failed + 1))
fi

# The examples, each under a unique prefix; the namespaces must be gone afterwards.
for ex in veth_pair bridge_containers; do
  prefix="nkgoex-$$-$ex"
  if (cd examples/go && go run "./$ex" "$prefix"); then
    passed=$((passed + 1))
  else
    echo "FAILED: Go example $ex" >&2
    failed=$((failed + 1))
  fi
  if ip netns list | grep -q "^$prefix"; then
    echo "FAILED: Go example $ex left namespaces behind" >&2
    failed=$((failed + 1))
  fi
done
# The other way to link: the build tag netkit_pkgconfig with a netkit.pc (here one for the
# shared library in target/release), as after netkit-ffi/install.sh. (ldd's output is read
# whole before grep: `ldd | grep -q` fails under pipefail when grep exits before ldd writes.)
pc="$root/target/go/pkgconfig"
mkdir -p "$pc"
printf 'Name: netkit\nDescription: netkit (target/release)\nVersion: 0\nCflags: -I%s\nLibs: -L%s -lnetkit\n' \
  "$root/netkit-ffi/include" "$root/target/release" > "$pc/netkit.pc"
if (cd examples/go && PKG_CONFIG_PATH="$pc" go build -tags netkit_pkgconfig -o "$root/target/go/veth_pair.shared" ./veth_pair) &&
  LD_LIBRARY_PATH="$root/target/release" "$root/target/go/veth_pair.shared" "nkgoex-$$-shared" &&
  linked=$(ldd "$root/target/go/veth_pair.shared") && grep -q 'libnetkit\.so' <<<"$linked"; then
  passed=$((passed + 1))
else
  echo "FAILED: the Go example linked through pkg-config (tag netkit_pkgconfig)" >&2
  failed=$((failed + 1))
fi

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # go vet or a build failure: no --- FAIL line
fi
verdict=ok
[ "$failed" -eq 0 ] || verdict=FAILED
echo "test result: $verdict. $((passed + skipped)) passed; $failed failed; 0 ignored (Go package and examples)"
[ "$failed" -eq 0 ]
