package chain

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
)

var canonicalCorpus = []string{
	workedExample,
	`{"b":"a\"b\\c\n\t\u0001<>&\u2028é😀","a":[1.50,1e-7,-0,true,false,null],"hash":"x","signature":"y","é":{"z":1,"Z":2}}`,
	`  {"a" : { "hash" : 1, "signature": [ ] } , "x":"\ud83d\ude00\ud800\u0041\udc00z", "y": "\/\b\f\r"}  `,
	`{"dup":1,"dup":2,"a":{"k":1,"k":[3]}}`,
	`{"dup":1,"dup":2,"a":{"k":1,"k":[3]},"b":{"k":1,"j":2,"k":3},"c":{"k":1,"j":2,"k":[{"y":1,"x":2},{"y":3,"x":4,"x":5}]}}`,
	`{"z":1,"a\u0000b":2,"a":{"b":3},"\u0061":4}`,
	`{"bad utf8":"` + "\xff\xfe" + `ok","` + "k\xc3" + `":1}`,
	`{"n":[0,-1,12.5e+3,1E2,0.000001,123456789012345678901234567890]}`,
	`{}`, `{"a":{}}`, `{"a":[]}`, `{"a":[{}]}`,
	`[1]`, `"s"`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":tru}`, `{"a" 1}`, `{"a":1,}`, `{,}`, `{"a":"\x"}`,
	`{"a":"` + "\x01" + `"}`, `{"a":1} x`, `{"a":1}{}`, `{`, ``, `{"a":"\u12"}`, `{"a":[1 2]}`, `{"a":[1,]}`,
}

// TestCanonicalMatchesEncodingJSON checks the single-pass canonicalizer against the one built
// on encoding/json: same bytes for every valid record, an error for every invalid one.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	corpus := append([]string(nil), canonicalCorpus...)
	for i := range 20 {
		raw, _ := json.Marshal(testRecord("r", i))
		corpus = append(corpus, string(raw))
		var indented bytes.Buffer
		_ = json.Indent(&indented, raw, "", "   ")
		corpus = append(corpus, indented.String())
	}
	for _, in := range corpus {
		checkCanonical(t, []byte(in))
	}
}

// reused is one canonicalizer for every input checked, as a Verifier keeps one for a whole
// history: what it remembers of earlier objects (their key order) must not leak into later ones.
var (
	reusedMu sync.Mutex
	reused   canonicalizer
)

func checkCanonical(t *testing.T, in []byte) {
	t.Helper()
	fast, errFast := Canonical(in)
	slow, errSlow := canonicalSlow(in)
	if (errFast == nil) != (errSlow == nil) {
		t.Fatalf("%q: fast error %v, encoding/json error %v", in, errFast, errSlow)
	}
	if !bytes.Equal(fast, slow) {
		t.Fatalf("%q:\nfast %s\nslow %s", in, fast, slow)
	}
	reusedMu.Lock()
	defer reusedMu.Unlock()
	if err := reused.record(in); (err == nil) != (errSlow == nil) || (err == nil && !bytes.Equal(reused.out, slow)) {
		t.Fatalf("%q: reused canonicalizer: %v\n%s\nwant %s", in, err, reused.out, slow)
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range canonicalCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkCanonical(t, in)
	})
}

// BenchmarkVerify is the per-record cost of verifying a long history: one Verifier over a
// chain of realistic records.
func BenchmarkVerify(b *testing.B) {
	var raws [][]byte
	prev, size := Genesis, 0
	for i := range 100 {
		r := testRecord("run", i)
		if err := Seal(r, prev, nil); err != nil {
			b.Fatal(err)
		}
		prev = r.Hash
		raw, _ := json.Marshal(r)
		raws, size = append(raws, raw), size+len(raw)
	}
	b.SetBytes(int64(size / len(raws)))
	b.ReportAllocs()
	var v *Verifier
	for i := 0; b.Loop(); i++ {
		if i%len(raws) == 0 {
			v = NewVerifier(nil)
		}
		if v.Add(raws[i%len(raws)]) != nil {
			b.Fatal(v.Result())
		}
	}
}

// TestObjects reads arrays of objects as encoding/json does, and refuses what is not one.
func TestObjects(t *testing.T) {
	t.Parallel()
	r := testRecord("r", 1)
	r.Checks = append(r.Checks, r.Checks[0])
	r.Checks[1].Name, r.Checks[1].Evidence = "second \"one\"", nil
	raw, _ := json.Marshal(r.Checks)
	type check struct{ Name, Result string }
	var want []check
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	var got []check
	var objects Objects
	err := objects.Each(raw, func(f *Fields) error {
		name, _ := f.String("name")
		result, _ := f.String("result")
		got = append(got, check{name, result})
		if f.Raw("evidence") == nil && name != "second \"one\"" {
			t.Errorf("check %s: evidence not located", name)
		}
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Objects: %v %v, want %v", got, err, want)
	}
	if err := objects.Each([]byte(" [ ] "), func(*Fields) error { t.Error("an element in []"); return nil }); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{``, `{}`, `[1]`, `[{"a":1},]`, `[{}] x`, `[{"a":}]`, `[{}`} {
		if err := objects.Each([]byte(bad), func(*Fields) error { return nil }); err == nil {
			t.Errorf("Objects(%s) accepted", bad)
		}
	}
}
