package chain

import (
	"bytes"
	"encoding/json"
	"testing"
)

var canonicalCorpus = []string{
	workedExample,
	`{"b":"a\"b\\c\n\t\u0001<>&\u2028é😀","a":[1.50,1e-7,-0,true,false,null],"hash":"x","signature":"y","é":{"z":1,"Z":2}}`,
	`  {"a" : { "hash" : 1, "signature": [ ] } , "x":"\ud83d\ude00\ud800\u0041\udc00z", "y": "\/\b\f\r"}  `,
	`{"dup":1,"dup":2,"a":{"k":1,"k":[3]}}`,
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
}

func FuzzCanonical(f *testing.F) {
	for _, s := range canonicalCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkCanonical(t, in)
	})
}

func BenchmarkVerify(b *testing.B) {
	raw, _ := json.Marshal(testRecord("r", 1))
	r := testRecord("r", 1)
	_ = Seal(r, "", nil)
	raw, _ = json.Marshal(r)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		v := NewVerifier(nil)
		if v.Add(raw) != nil {
			b.Fatal(v.Result())
		}
	}
}
