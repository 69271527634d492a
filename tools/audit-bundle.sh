#!/bin/sh
# audit-bundle.sh BUNDLE RELEASE_PUB [ROLE=SIGNER_PUB ...]
#
# Checks a rustynet evidence bundle with standard tools only (sh, jq,
# base64, openssl, sha256sum), independently of rustynet-gate: an auditor's
# second opinion. It checks
#   - the DSSE signature of the manifest, of the verdict and of every gate
#     statement the verdict lists, with the release public key;
#   - the size and SHA-256 of every artifact the manifest lists, and the
#     digest of every statement the verdict lists;
#   - each sign-off's DSSE signature, with the key given for its role
#     (ROLE=FILE, as policies/release.yaml lists them), and that it names
#     this bundle's manifest digest;
# and prints the verdict the bundle records. It does not recompute the
# verdict from the policy (rustynet-gate verify does); it proves the
# evidence is what the release key signed, unchanged.
#
# A DSSE signature is over the pre-authentication encoding
#   "DSSEv1" SP len(type) SP type SP len(payload) SP payload
# (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md),
# ECDSA P-256 with SHA-256 (DER) or Ed25519.
set -eu

die() { echo "audit-bundle: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: audit-bundle.sh BUNDLE RELEASE_PUB [ROLE=SIGNER_PUB ...]"
bundle=$1 release=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# verify_envelope FILE PUB: checks the envelope's signature, leaves its
# payload in $tmp/payload.
verify_envelope() {
	env=$1 pub=$2
	type=$(jq -r '.payloadType' "$env")
	jq -r '.payload' "$env" | base64 -d > "$tmp/payload"
	n=$(jq '.signatures | length' "$env")
	[ "$n" -ge 1 ] || die "$env is not signed"
	len=$(wc -c < "$tmp/payload" | tr -d ' ')
	{ printf 'DSSEv1 %s %s %s ' "$(printf %s "$type" | wc -c | tr -d ' ')" "$type" "$len"; cat "$tmp/payload"; } > "$tmp/pae"
	ok=
	i=0
	while [ "$i" -lt "$n" ]; do
		jq -r ".signatures[$i].sig" "$env" | base64 -d > "$tmp/sig"
		if openssl pkey -pubin -in "$pub" -noout -text 2>/dev/null | grep -q '^ED25519'; then
			openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$tmp/pae" -sigfile "$tmp/sig" >/dev/null 2>&1 && ok=1
		else
			openssl dgst -sha256 -verify "$pub" -signature "$tmp/sig" "$tmp/pae" >/dev/null 2>&1 && ok=1
		fi
		i=$((i + 1))
	done
	[ -n "$ok" ] || die "$env: no signature verifies with $pub"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The manifest: signed, then every artifact's size and digest.
verify_envelope "$bundle/manifest.dsse.json" "$release"
cp "$tmp/payload" "$tmp/manifest.json"
manifest_sha=$(sha "$bundle/manifest.dsse.json")
count=$(jq '.artifacts | length' "$tmp/manifest.json")
i=0
while [ "$i" -lt "$count" ]; do
	path=$(jq -r ".artifacts[$i].path" "$tmp/manifest.json")
	want=$(jq -r ".artifacts[$i].sha256" "$tmp/manifest.json")
	size=$(jq -r ".sizes[$i]" "$tmp/manifest.json")
	case "$path" in /* | *..*) die "manifest lists a bad path $path" ;; esac
	[ -f "$bundle/$path" ] || die "$path: listed in the manifest, missing"
	[ "$(wc -c < "$bundle/$path" | tr -d ' ')" = "$size" ] || die "$path: not $size bytes (changed)"
	[ "$(sha "$bundle/$path")" = "$want" ] || die "$path: sha256 differs from the manifest's (changed)"
	i=$((i + 1))
done
echo "manifest: signature valid, $count artifacts match their sizes and digests"

# The verdict: signed; every input it lists matches its digest, and every
# statement among them is signed.
verify_envelope "$bundle/statements/verdict.dsse.json" "$release"
cp "$tmp/payload" "$tmp/verdict.json"
jq -r '.predicate.inputAttestations[] | .uri + " " + .digest.sha256' "$tmp/verdict.json" > "$tmp/inputs"
while read -r uri want; do
	case "$uri" in /* | *..*) die "the verdict lists a bad path $uri" ;; esac
	[ "$(sha "$bundle/$uri")" = "$want" ] || die "$uri: sha256 differs from the verdict's (changed)"
	case "$uri" in statements/*) verify_envelope "$bundle/$uri" "$release" ;; esac
done < "$tmp/inputs"
echo "verdict: signature valid, $(wc -l < "$tmp/inputs" | tr -d ' ') inputs match their digests, every statement signed"

# Sign-offs: each signed by the key given for its role, of this bundle.
for so in "$bundle"/signoffs/*.dsse.json; do
	[ -e "$so" ] || break
	role=$(jq -r '.payload' "$so" | base64 -d | jq -r '.predicate.role')
	pub=
	for arg in "$@"; do
		case "$arg" in "$role="*) pub=${arg#*=} ;; esac
	done
	[ -n "$pub" ] || die "$so: a sign-off for $role, and no key was given for it (pass $role=FILE)"
	verify_envelope "$so" "$pub"
	[ "$(jq -r '.predicate.manifest_sha256' "$tmp/payload")" = "$manifest_sha" ] || die "$so: signs off another bundle"
	echo "sign-off: $role by $(jq -r '.predicate.signer' "$tmp/payload") at $(jq -r '.predicate.time' "$tmp/payload"): signature valid, of this bundle"
done

jq -r '"recorded verdict: " + .predicate.verificationResult + " for " + (.predicate.verifiedLevels | join(",")) + " at " + .predicate.timeVerified + ", commit " + (.subject[] | select(.name | startswith("git")) | .digest.gitCommit)' "$tmp/verdict.json"
