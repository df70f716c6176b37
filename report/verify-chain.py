#!/usr/bin/env python3
# usage: verify-chain.py records.jsonl [firedrill-signing.pub]
import base64, hashlib, json, sys

class Num(str):  # a number, kept exactly as written
    pass

def enc(v):
    if isinstance(v, Num):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + enc(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(enc(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)  # strings, true, false, null

pub = None
if len(sys.argv) > 2:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    pub = load_pem_public_key(open(sys.argv[2], "rb").read())

prev = start = None
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    rec = json.loads(line, parse_float=Num, parse_int=Num)
    if prev is None:  # a segment of the chain starts after its first record's prevHash
        prev = start = rec["prevHash"]
    stored, sig = rec.pop("hash", ""), rec.pop("signature", "")
    digest = hashlib.sha256(enc(rec).encode("utf-8")).digest()
    if digest.hex() != stored:
        sys.exit(f"record {n} ({rec['id']}): modified")
    checkpoint = rec.get("kind") == "checkpoint"  # only ever first: it stands for the records before
    if rec["prevHash"] != prev or (checkpoint and n > 1):
        sys.exit(f"record {n} ({rec['id']}): deleted, inserted or reordered")
    if pub is not None:
        if not sig:
            sys.exit(f"record {n} ({rec['id']}): unsigned")
        pub.verify(base64.b64decode(sig), digest)  # raises InvalidSignature
    prev = rec["lastHash"] if checkpoint else stored  # a checkpoint: the next record links to its lastHash
print(f"intact: {n} records after {start or 'the genesis (a whole history)'}, chain head {prev}")
