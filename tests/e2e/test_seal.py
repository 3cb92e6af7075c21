# test_seal.py: electronic seals: sign, verify, tampering, bytes, rotation, scope, keys.
import base64
import copy
import json
import os
import stat
import unittest

import hashlib
import shutil
import subprocess

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztnode import NodeTest, edit_db

# RFC 8785 (JCS) as its Appendix suggests: ECMAScript's JSON.stringify writes numbers and
# strings as JCS does; only the keys need sorting (JavaScript's sort compares UTF-16 code
# units, as JCS asks). An implementation independent of the node's, to check against.
JCS_JS = r"""
const jcs = v => v === null || typeof v !== "object" ? JSON.stringify(v)
  : Array.isArray(v) ? "[" + v.map(jcs).join(",") + "]"
  : "{" + Object.keys(v).sort().map(k => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
const docs = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(docs.map(t => jcs(JSON.parse(t)))));
"""


def jcs(texts):
    """The JCS text of each JSON text, by Node.js (Debian's nodejs, from scripts/setup)."""
    node = shutil.which("node")
    assert node, "node (nodejs) is needed: scripts/setup installs it"
    out = subprocess.run([node, "-e", JCS_JS], input=json.dumps(texts).encode(),
                         capture_output=True, check=True).stdout
    return json.loads(out)

DOC = {"permit": "B-2024-001", "holder": "张三", "items": [1, 2.5, True, None], "note": "ok"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def flip_signature(seal):
    """The seal with one byte of its signature changed."""
    s = copy.deepcopy(seal)
    sig = bytearray(unb64url(s["signature"]))
    sig[17] ^= 0x04
    s["signature"] = b64url(bytes(sig))
    return s


class Seals(NodeTest):
    @classmethod
    def setUpClass(cls):
        n = cls.shared_node(plugins=("hello",))
        # root ─┬─ bureau1 ── section1
        #       └─ bureau2
        for code, parent in (("bureau1", "root"), ("section1", "bureau1"), ("bureau2", "root")):
            st, _, d = n.json("POST", "/admin/departments",
                              {"code": code, "name": code.title(), "parent": parent})
            assert st == 201, (st, d)
        cls.officer = n.new_user("officer1", roles=("seal_officer",), department="bureau1")
        cls.officer2 = n.new_user("officer2", roles=("seal_officer",), department="bureau2")

    def sign(self, body, who=None):
        return self.shared.json("POST", "/seal/sign", body, who or self.officer, auth=False)

    def sealed(self, body, who=None):
        st, _, seal = self.sign(body, who)
        self.assertEqual(st, 201, seal)
        return seal

    def verify(self, body):
        st, _, d = self.shared.json("POST", "/seal/verify", body, auth=False)  # anyone may
        self.assertEqual(st, 200, d)
        self.assertIsInstance(d["valid"], bool)
        return d

    def assertValid(self, body):
        d = self.verify(body)
        self.assertTrue(d["valid"], d)

    def assertInvalid(self, body):
        d = self.verify(body)
        self.assertFalse(d["valid"], d)
        self.assertTrue(d.get("reason"), d)
        return d

    def test_json_document(self):
        seal = self.sealed({"document": DOC})
        # the audit record names the seal: department, key, time and the document's digest
        auditor = self.shared.new_user("auditor1", roles=("auditor",))
        st, _, recs = self.shared.json("GET", "/audit?limit=1000", None, auditor,
                                       auth=False)
        self.assertEqual(st, 200, recs)
        self.assertIn(("seal", "bureau1 key %s time %d digest %s"
                       % (seal["key_id"], seal["time"], seal["digest"])),
                      [(r["action"], r["object"]) for r in recs["items"]], recs["items"][-3:])
        self.assertEqual(seal["department"], "bureau1")  # the officer's own by default
        self.assertEqual(seal["algorithm"], "Ed25519")
        for k in ("key_id", "time", "signature"):
            self.assertIn(k, seal)
        self.assertValid({"document": DOC, "seal": seal})
        # canonical JSON: the same document with its keys in another order
        reordered = dict(reversed(list(DOC.items())))
        self.assertValid({"document": reordered, "seal": seal})
        # one changed byte in the document
        changed = dict(DOC, permit="B-2024-002")
        self.assertInvalid({"document": changed, "seal": seal})
        self.assertInvalid({"document": dict(DOC, extra=1), "seal": seal})
        # one changed byte in the signature
        self.assertInvalid({"document": DOC, "seal": flip_signature(seal)})
        # without its digest the seal still binds the document through the signature
        forged = dict(seal)
        forged.pop("digest", None)
        self.assertInvalid({"document": changed, "seal": forged})

    def test_bytes_document(self):
        doc = bytes(range(256)) + "印章".encode() + os.urandom(64)
        seal = self.sealed({"document_base64": b64url(doc), "department": "bureau1"})
        self.assertValid({"document_base64": b64url(doc), "seal": seal})
        for i in (0, 100, len(doc) - 1):
            with self.subTest(byte=i):
                bad = bytearray(doc)
                bad[i] ^= 0x01
                self.assertInvalid({"document_base64": b64url(bytes(bad)), "seal": seal})
        self.assertInvalid({"document_base64": b64url(doc[:-1]), "seal": seal})
        self.assertInvalid({"document_base64": b64url(doc), "seal": flip_signature(seal)})

    def test_seal_of_another_time_or_key_fails(self):
        seal = self.sealed({"document": DOC})
        self.assertInvalid({"document": DOC, "seal": dict(seal, time=seal["time"] + 1)})
        self.assertInvalid({"document": DOC, "seal": dict(seal, key_id="0" * 26)})
        # fields the signature does not cover, or covers only rounded, must be as issued
        for bad in ({"time": seal["time"] + 0.4}, {"time": 1e300}, {"time": -1e300},
                    {"v": 2}, {"algorithm": "RSA"}, {"v": None}, {"algorithm": None}):
            with self.subTest(seal=bad):
                d = self.assertInvalid({"document": DOC, "seal": dict(seal, **bad)})
                self.assertRegex(d["reason"], "version 1|whole number")
        self.assertValid({"document": DOC, "seal": seal})

    def test_officer_seals_only_in_their_subtree(self):
        seal = self.sealed({"document": DOC, "department": "section1"})
        self.assertEqual(seal["department"], "section1")
        self.assertValid({"document": DOC, "seal": seal})
        for dept in ("bureau2", "root", "nosuchdept"):
            with self.subTest(department=dept):
                st, h, b = self.shared.request(
                    "POST", "/seal/sign", {"document": DOC, "department": dept},
                    self.officer, auth=False,
                )
                self.assertProblem(st, h, b, 403, "forbidden")
        # the admin holds no seal_officer role
        st, h, b = self.shared.request("POST", "/seal/sign", {"document": DOC})
        self.assertProblem(st, h, b, 403, "forbidden")

    def test_forged_department(self):
        seal = self.sealed({"document": DOC})  # bureau1
        other = self.sealed({"document": {"x": 1}}, self.officer2)  # bureau2 has a key now
        self.assertEqual(other["department"], "bureau2")
        # claim bureau2 with bureau1's key, or with bureau2's key and bureau1's signature
        self.assertInvalid({"document": DOC, "seal": dict(seal, department="bureau2")})
        self.assertInvalid(
            {"document": DOC, "seal": dict(seal, department="bureau2", key_id=other["key_id"])}
        )
        self.assertInvalid({"document": DOC, "seal": dict(other, signature=seal["signature"])})
        # and the genuine ones still verify
        self.assertValid({"document": DOC, "seal": seal})
        self.assertValid({"document": {"x": 1}, "seal": other})

    def test_rotation_keeps_old_seals_valid(self):
        n = self.shared
        old = self.sealed({"document": DOC, "department": "section1"})
        st, _, k2 = n.json("POST", "/admin/seal/keys", {"department": "section1"})
        self.assertEqual(st, 201, k2)
        self.assertNotEqual(k2["key_id"], old["key_id"])
        self.assertNotIn("sealed", k2)
        self.assertValid({"document": DOC, "seal": old})
        new = self.sealed({"document": DOC, "department": "section1"})
        self.assertEqual(new["key_id"], k2["key_id"])
        self.assertValid({"document": DOC, "seal": new})
        self.assertInvalid({"document": DOC, "seal": flip_signature(old)})
        st, _, keys = n.json("GET", "/seal/keys?department=section1", auth=False)
        self.assertEqual(st, 200)
        by_id = {k["key_id"]: k for k in keys["items"]}
        self.assertEqual(set(by_id), {old["key_id"], k2["key_id"]})
        self.assertIn("retired_at", by_id[old["key_id"]])
        self.assertGreaterEqual(by_id[old["key_id"]]["retired_at"], old["time"])
        self.assertNotIn("retired_at", by_id[k2["key_id"]])
        for k in keys["items"]:
            self.assertEqual(k["department"], "section1")
            self.assertEqual(len(bytes.fromhex(k["public_key"])), 32)
        # a seal dated after its key retired is refused (even before the signature check)
        late = dict(old, time=by_id[old["key_id"]]["retired_at"] + 1000)
        d = self.assertInvalid({"document": DOC, "seal": late})
        self.assertIn("retired", d["reason"])

    def test_published_keys_hold_no_private_part(self):
        self.sealed({"document": DOC})
        st, _, b = self.shared.request("GET", "/seal/keys", auth=False)
        self.assertEqual(st, 200)
        keys = json.loads(b)["items"]
        self.assertTrue(keys)
        for k in keys:
            self.assertEqual(set(k) - {"key_id", "department", "algorithm", "public_key",
                                       "created_at", "retired_at"}, set(), k)

    def test_master_key_file_is_private(self):
        path = os.path.join(os.path.dirname(self.shared.conf), "keys", "master.key")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def raw(self, path, text, who=None):
        """POST the JSON text as it is (numbers written as the test wants them)."""
        st, h, b = self.shared.request(path and "POST", path, text,
                                       dict(who or {}, **{"Content-Type": "application/json"}),
                                       auth=False)
        return st, h, b

    def test_one_number_one_text(self):
        # the same number written differently is the same document ...
        for a, b in (("1.0", "1"), ("1e2", "100"), ("-0", "0"), ("0.1", "1e-1"),
                     ("-2.50", "-2.5"), ("9007199254740991", "9007199254740991.0")):
            with self.subTest(sealed=a, checked=b):
                st, _, seal = self.raw("/seal/sign", '{"document": {"n": %s}}' % a, self.officer)
                self.assertEqual(st, 201, seal)
                seal = json.loads(seal)
                self.assertValid({"document": {"n": json.loads(b)}, "seal": seal})
                st, _, d = self.raw("/seal/verify", '{"document": {"n": %s}, "seal": %s}'
                                    % (b, json.dumps(seal)))
                self.assertTrue(json.loads(d)["valid"], d)
                self.assertInvalid({"document": {"n": json.loads(b) - 1}, "seal": seal})
        # ... but from 2^53 on a double cannot tell an integer from its neighbour: an
        # 18-digit ID number sealed as a number would vouch for the one next to it too
        for big in ("110101199003077777", "9007199254740992", "-9007199254740993", "1e300",
                    "12345678901234567890"):
            with self.subTest(number=big):
                st, h, b = self.raw("/seal/sign", '{"document": {"id": %s}}' % big, self.officer)
                self.assertProblem(st, h, b, 422, "invalid-seal-request")
                self.assertIn("2^53", json.loads(b)["detail"])
                self.assertIn("as strings", json.loads(b)["detail"])
        seal = self.sealed({"document": {"id": "110101199003077777"}})  # as text it is exact
        self.assertInvalid({"document": {"id": "110101199003077776"}, "seal": seal})
        st, h, b = self.raw("/seal/verify", '{"document": {"id": 110101199003077776}, "seal": %s}'
                            % json.dumps(seal))
        self.assertProblem(st, h, b, 422, "invalid-seal-request")

    def test_unicode_and_escapes_have_one_text(self):
        doc = '{"名称": "张三\\u00e9\\n\\"", "\\ud83d\\ude00": [1, {"b": 2, "a": 1}], "a": null}'
        same = '{"a": null, "\\ud83d\\ude00": [1.0, {"a": 1, "b": 2}], "名称": "张三é\\u000a\\u0022"}'
        st, _, seal = self.raw("/seal/sign", '{"document": %s}' % doc, self.officer)
        self.assertEqual(st, 201, seal)
        st, _, d = self.raw("/seal/verify", '{"document": %s, "seal": %s}' % (same, seal.decode()))
        self.assertTrue(json.loads(d)["valid"], d)
        changed = same.replace("张三", "李四")
        st, _, d = self.raw("/seal/verify", '{"document": %s, "seal": %s}' % (changed, seal.decode()))
        self.assertFalse(json.loads(d)["valid"], d)

    def test_anyone_verifies_offline_with_jcs(self):
        # A seal of a JSON document signs its RFC 8785 (JCS) text, so a court or another
        # county checks it with any JCS library, BLAKE2b and Ed25519, trusting no node:
        # the recipe of the README, followed here with Node's JSON.stringify for JCS.
        docs = [
            '{"n": [0.1, 1e-7, 123.456, -0.0, 1.5e-6, 5e-324, 2.5e15, 9007199254740991, -1e-300]}',
            '{"n": [1E2, 100.000, 0.30000000000000004, 4.35, 33.3333333333333333, 1e-6]}',
            # U+FF61 sorts after U+1F600 in UTF-16 code units, before it in UTF-8 bytes
            '{"\\uff61": 1, "\\ud83d\\ude00": 2, "\\u00e9": 3, "e": 4, "": 5, "ee": 6}',
            '{"s": "\\u001f\\u007f\\u2028/\\\\\\"\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00 张三"}',
            '[{"b": {"d": [], "c": {}}, "a": [true, false, null, "x"]}, -12, 3.0]',
        ]
        canon = jcs(docs)
        st, _, keys = self.shared.json("GET", "/seal/keys", auth=False)
        self.assertEqual(st, 200)
        public = {k["key_id"]: bytes.fromhex(k["public_key"]) for k in keys["items"]}
        for doc, text in zip(docs, canon):
            with self.subTest(document=doc):
                st, _, b = self.raw("/seal/sign", '{"document": %s}' % doc, self.officer)
                self.assertEqual(st, 201, b)
                seal = json.loads(b)
                public.update({k["key_id"]: bytes.fromhex(k["public_key"])
                               for k in self.shared.json("GET", "/seal/keys", auth=False)[2]["items"]})
                digest = hashlib.blake2b(text.encode(), digest_size=32).hexdigest()
                self.assertEqual(seal["digest"], digest, text)
                msg = "zhengtong-seal-v1\n%s\n%s\n%d\n%s" % (
                    seal["department"], seal["key_id"], seal["time"], digest)
                # raises InvalidSignature if the node signed anything else
                Ed25519PublicKey.from_public_bytes(public[seal["key_id"]]).verify(
                    unb64url(seal["signature"]), msg.encode())
                self.assertValid({"document": json.loads(doc), "seal": seal})

    def test_bad_requests(self):
        for body, want in (
            ({"seal": {}}, 422),
            ({"document": DOC}, 422),
            ({"document": DOC, "document_base64": "AA", "seal": {}}, 422),
        ):
            with self.subTest(body=body):
                st, h, b = self.shared.request("POST", "/seal/verify", body, auth=False)
                self.assertProblem(st, h, b, want)
        st, h, b = self.shared.request("POST", "/seal/sign", {"department": "bureau1"},
                                       self.officer, auth=False)
        self.assertProblem(st, h, b, 422)
        # no seal key for a department that does not exist
        st, h, b = self.shared.request("POST", "/admin/seal/keys", {"department": "nosuch"})
        self.assertProblem(st, h, b, 422, "invalid-seal-request")
        # nor by sealing for it, even at the top of the tree
        top = self.shared.new_user("officer0", roles=("seal_officer",), department="root")
        st, h, b = self.shared.request("POST", "/seal/sign", {"department": "nosuch", "document": DOC},
                                       top, auth=False)
        self.assertIn(st, (403, 422), b)
        st, _, keys = self.shared.json("GET", "/seal/keys?department=nosuch")
        self.assertEqual((st, keys["items"]), (200, []))



OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SM2_ID = "1234567812345678"  # GM/T 0009-2012's default distinguishing ID


def openssl(*args, data=None):
    """Debian's openssl command line (a verifier that is not the node's code)."""
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, timeout=30)


def sm3(data):
    r = openssl("dgst", "-sm3", "-r", data=data)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0].decode()


class Sm2Seals(NodeTest):
    """seal.algorithm = "SM2" (国密): new department keys are SM2, seals are SM2 signatures
    over SM3 digests, and anyone checks them with OpenSSL's command line."""

    @classmethod
    def setUpClass(cls):
        cls.n = cls.shared_node(plugins=("hello",), roles=("seal_officer",),
                                options='seal = { algorithm = "SM2" }')

    def sealed(self, body):
        st, _, seal = self.n.json("POST", "/seal/sign", body)
        self.assertEqual(st, 201, seal)
        return seal

    def verify(self, body):
        st, _, d = self.n.json("POST", "/seal/verify", body, auth=False)
        self.assertEqual(st, 200, d)
        return d

    def test_json_and_bytes_documents(self):
        seal = self.sealed({"document": DOC})
        self.assertEqual((seal["v"], seal["algorithm"], seal["department"]), (1, "SM2", "root"))
        canon = jcs([json.dumps(DOC)])[0].encode()
        self.assertEqual(seal["digest"], sm3(canon))  # SM3 of the canonical text
        self.assertTrue(self.verify({"document": DOC, "seal": seal})["valid"])
        d = self.verify({"document": dict(DOC, permit="B-2024-002"), "seal": seal})
        self.assertEqual((d["valid"], d["reason"]),
                         (False, "the document is not the one that was sealed"))
        d = self.verify({"document": DOC, "seal": flip_signature(seal)})
        self.assertFalse(d["valid"], d)
        # a seal that claims the other algorithm is not the one made
        d = self.verify({"document": DOC, "seal": dict(seal, algorithm="Ed25519")})
        self.assertEqual((d["valid"], d["reason"]),
                         (False, "the seal says Ed25519, but its key is an SM2 key"))
        doc = bytes(range(256)) + "印章".encode()
        seal = self.sealed({"document_base64": b64url(doc)})
        self.assertEqual(seal["digest"], sm3(doc))
        self.assertTrue(self.verify({"document_base64": b64url(doc), "seal": seal})["valid"])
        self.assertFalse(self.verify({"document_base64": b64url(doc[:-1]), "seal": seal})["valid"])

    def test_anyone_verifies_offline_with_openssl(self):
        # the README's recipe, with nothing but the openssl command line
        seal = self.sealed({"document": DOC})
        st, _, keys = self.n.json("GET", "/seal/keys", auth=False)
        self.assertEqual(st, 200, keys)
        key = [k for k in keys["items"] if k["key_id"] == seal["key_id"]][0]
        self.assertEqual(key["algorithm"], "SM2")
        self.assertEqual(len(bytes.fromhex(key["public_key"])), 65)  # 04 | X | Y
        self.assertNotIn("sealed", key)
        tmp = self.n.dir
        pem, msg, sig = (os.path.join(tmp, f) for f in ("sm2.pem", "msg", "sig.der"))
        with open(pem, "w") as f:
            f.write(key["public_key_pem"])
        # the PEM is the hex key (openssl reads it back to the same point)
        r = openssl("pkey", "-pubin", "-in", pem, "-noout", "-text")
        self.assertEqual(r.returncode, 0, r.stderr)
        point = "".join(l.strip() for l in r.stdout.decode().split("pub:")[1].split("ASN1")[0]
                        .splitlines()).replace(":", "")
        self.assertEqual(point, key["public_key"])
        digest = sm3(jcs([json.dumps(DOC)])[0].encode())
        self.assertEqual(digest, seal["digest"])

        def check(message):
            with open(msg, "wb") as f:
                f.write(message.encode())
            with open(sig, "wb") as f:
                f.write(unb64url(seal["signature"]))
            return openssl("pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-digest",
                           "sm3", "-pkeyopt", "distid:" + SM2_ID, "-in", msg, "-sigfile", sig)

        good = "zhengtong-seal-v1\n%s\n%s\n%d\n%s" % (seal["department"], seal["key_id"],
                                                       seal["time"], digest)
        r = check(good)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(b"Signature Verified Successfully", r.stdout)
        r = check(good.replace(digest, sm3(b"another document")))  # and it can fail
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_bad_algorithm_is_a_config_error(self):
        self.assertConfigError('seal = { algorithm = "RSA" }',
                               r"seal.algorithm: 'RSA' is not a seal algorithm: \"Ed25519\" "
                               r"\(the default\) or \"SM2\"")


class SealAlgorithmChanged(NodeTest):
    def test_a_department_switches_by_rotating_and_old_seals_stay_valid(self):
        n = self.node(plugins=("hello",), roles=("seal_officer",))
        st, _, old = n.json("POST", "/seal/sign", {"document": DOC})
        self.assertEqual((st, old["algorithm"]), (201, "Ed25519"), old)
        self.assertEqual(n.stop(), 0)
        n._conf_text += 'seal = { algorithm = "SM2" }\n'
        n._write_conf()
        n.start()
        self.assertIn("seal.algorithm is SM2, but 1 departments seal with Ed25519 keys (root): "
                      "each goes on with its key until it is rotated", n.log())
        st, _, same = n.json("POST", "/seal/sign", {"document": DOC})
        self.assertEqual((st, same["algorithm"], same["key_id"]), (201, "Ed25519", old["key_id"]))
        st, _, k = n.json("POST", "/admin/seal/keys", {"department": "root"})
        self.assertEqual((st, k["algorithm"]), (201, "SM2"), k)
        self.assertIn("BEGIN PUBLIC KEY", k["public_key_pem"])
        st, _, new = n.json("POST", "/seal/sign", {"document": DOC})
        self.assertEqual((st, new["algorithm"], new["key_id"]), (201, "SM2", k["key_id"]))
        for seal in (old, same, new):
            st, _, d = n.json("POST", "/seal/verify", {"document": DOC, "seal": seal}, auth=False)
            self.assertTrue(d["valid"], (seal, d))
        st, _, keys = n.json("GET", "/seal/keys", auth=False)
        self.assertEqual(sorted(x["algorithm"] for x in keys["items"]), ["Ed25519", "SM2"])
        # an SM2 key whose public key was changed in the store is neither published nor
        # believed
        self.assertEqual(n.stop(), 0)

        def change(txn, db):
            rec = json.loads(txn.get(k["key_id"].encode()))
            pk = bytearray.fromhex(rec["public_key"])
            pk[40] ^= 0x01
            rec["public_key"] = pk.hex()
            txn.put(k["key_id"].encode(), json.dumps(rec).encode())

        edit_db(self, n, "_core/seal_keys", change)
        n.start()
        st, _, keys = n.json("GET", "/seal/keys", auth=False)
        self.assertNotIn(k["key_id"], [x["key_id"] for x in keys["items"]])
        st, _, d = n.json("POST", "/seal/verify", {"document": DOC, "seal": new}, auth=False)
        self.assertFalse(d["valid"], d)
        self.assertIn("changed outside Zhengtong", d["reason"])
        st, _, d = n.json("POST", "/seal/verify", {"document": DOC, "seal": old}, auth=False)
        self.assertTrue(d["valid"], d)


class SealKeysChangedOutside(NodeTest):
    """Someone who can write the node's store, but has no master key, puts a key pair of
    their own in a department's key record and makes seals with it."""

    def test_forged_key_makes_no_valid_seal(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        n = self.node(plugins=("hello",), roles=("seal_officer",))
        genuine = {"permit": "B-2024-001"}
        st, _, seal = n.json("POST", "/seal/sign", {"document": genuine})
        self.assertEqual(st, 201, seal)
        self.assertEqual(n.stop(), 0)
        forger = Ed25519PrivateKey.generate()
        pk = forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        sealed_too = b"\x01" + pk + os.urandom(24 + 48)  # its sealed form says so too
        for fake_sealed in (False, True):
            def change(txn, db):
                k = json.loads(txn.get(seal["key_id"].encode()))
                k["public_key"] = pk.hex()
                if fake_sealed:
                    k["sealed"] = b64url(sealed_too)
                txn.put(seal["key_id"].encode(), json.dumps(k).encode())

            edit_db(self, n, "_core/seal_keys", change)
            n.start()
            # not published for those who check seals with their own Ed25519 tools
            st, _, keys = n.json("GET", "/seal/keys", auth=False)
            self.assertEqual(st, 200, keys)
            self.assertNotIn(seal["key_id"], [k["key_id"] for k in keys["items"]])
            forged_doc = {"permit": "B-2024-999"}
            canon = json.dumps(forged_doc, separators=(",", ":"), sort_keys=True).encode()
            digest = hashlib.blake2b(canon, digest_size=32).hexdigest()
            msg = "zhengtong-seal-v1\n%s\n%s\n%d\n%s" % (seal["department"], seal["key_id"],
                                                        seal["time"], digest)
            forged = dict(seal, digest=digest, signature=b64url(forger.sign(msg.encode())))
            with self.subTest(sealed_form_changed_too=fake_sealed):
                st, _, d = n.json("POST", "/seal/verify", {"document": forged_doc, "seal": forged},
                                  auth=False)
                self.assertEqual(st, 200, d)
                self.assertFalse(d["valid"], d)
                self.assertIn("changed outside Zhengtong", d["reason"])
                # nor does the genuine seal verify against a key that is no longer its own
                st, _, d = n.json("POST", "/seal/verify", {"document": genuine, "seal": seal},
                                  auth=False)
                self.assertFalse(d["valid"], d)
                self.assertIn("seal key", n.log())
            self.assertEqual(n.stop(), 0)


if __name__ == "__main__":
    unittest.main()
