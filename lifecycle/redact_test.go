package lifecycle_test

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/lifecycle"
)

type redactInner struct {
	Zone  string
	Shard int `json:"shard"`
}

type redactPeer struct{ Host string }

type RedactExported struct{ Region string }

// redactShapes holds no secrets, so Redact must show it exactly as encoding/json does.
type redactShapes struct {
	redactInner               // unexported embedded struct: fields promoted
	*redactPeer               // unexported embedded pointer: fields promoted
	RedactExported            // exported embedded struct without a tag: fields promoted
	Named          redactPeer `json:"named"`
	ByID           map[int]string
	ByPort         map[uint16]bool
	ByIP           map[netip.Addr]string // TextMarshaler keys
	hidden         string
}

func TestRedactMatchesJSONShape(t *testing.T) {
	v := redactShapes{
		redactInner:    redactInner{Zone: "eu-1", Shard: 3},
		redactPeer:     &redactPeer{Host: "db"},
		RedactExported: RedactExported{Region: "eu"},
		Named:          redactPeer{Host: "cache"},
		ByID:           map[int]string{1: "one", -2: "minus two"},
		ByPort:         map[uint16]bool{8080: true},
		ByIP:           map[netip.Addr]string{netip.MustParseAddr("10.0.0.1"): "a"},
		hidden:         "x",
	}
	asJSON := func(x any) any {
		t.Helper()
		b, err := json.Marshal(x)
		must(t, err)
		var out any
		must(t, json.Unmarshal(b, &out))
		return out
	}
	if diff := cmp.Diff(asJSON(v), asJSON(lifecycle.Redact(v))); diff != "" {
		t.Errorf("Redact's shape differs from encoding/json's (-json +redact):\n%s", diff)
	}
}

func TestRedactURLPassword(t *testing.T) {
	got := lifecycle.Redact(struct{ DB, Plain string }{"postgres://app:hunter2@db:5432/x", "https://example.com/a"})
	want := map[string]any{"DB": "postgres://app:xxxxx@db:5432/x", "Plain": "https://example.com/a"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type Credentials struct{ User, Pass string }

// An embedded struct whose name looks secret keeps its promoted fields secret.
func TestRedactEmbeddedSecret(t *testing.T) {
	got := lifecycle.Redact(struct {
		Credentials
		Host string
	}{Credentials{"app", "hunter2"}, "db"})
	want := map[string]any{"User": lifecycle.Redacted, "Pass": lifecycle.Redacted, "Host": "db"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type RedactLayer struct {
	*RedactLayer
	Name string
}

// A struct that embeds a pointer to its own type, looping back to itself, ends (encoding/json
// visits each embedded type once) instead of recursing until the stack overflows.
func TestRedactEmbeddedCycle(t *testing.T) {
	l := &RedactLayer{Name: "x"}
	l.RedactLayer = l
	if diff := cmp.Diff(map[string]any{"Name": "x"}, lifecycle.Redact(l)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type (
	RedactDeep    struct{ X string }
	RedactA       struct{ RedactDeep }
	RedactB       struct{ X string }
	RedactC       struct{ Y string }
	RedactD       struct{ Y string }
	RedactTagged  struct{ Z string }
	RedactTagged2 struct {
		W string `json:"Z"`
	}
	redactDominance struct {
		RedactA // X at depth 2 loses to B's X at depth 1
		RedactB
		RedactC // Y at depth 1 twice: left out
		RedactD
		RedactTagged // Z untagged loses to the tagged Z at the same depth
		RedactTagged2
	}
)

// Of the promoted fields sharing a name, Redact keeps the one encoding/json keeps.
func TestRedactPromotionFollowsJSON(t *testing.T) {
	v := redactDominance{RedactA{RedactDeep{"deep"}}, RedactB{"shallow"}, RedactC{"c"}, RedactD{"d"}, RedactTagged{"untagged"}, RedactTagged2{"tagged"}}
	want, err := json.Marshal(v)
	must(t, err)
	got, err := json.Marshal(lifecycle.Redact(v))
	must(t, err)
	if string(want) != string(got) {
		t.Errorf("Redact %s, encoding/json %s", got, want)
	}
}

type RedactFingerprint struct{ Key string }

func (RedactFingerprint) MarshalText() ([]byte, error) { return []byte("fingerprint"), nil }

type RedactLabel struct{ Other string }

func (RedactLabel) MarshalText() ([]byte, error) { return []byte("label"), nil }

// An embedded TextMarshaler shows its text, not its fields: MarshalText is how it says what to show.
// (encoding/json opens both up here, their MarshalText methods clashing.)
func TestRedactEmbeddedTextMarshaler(t *testing.T) {
	got := lifecycle.Redact(struct {
		RedactFingerprint
		RedactLabel
	}{RedactFingerprint{"hunter2"}, RedactLabel{"o"}})
	want := map[string]any{"RedactFingerprint": "fingerprint", "RedactLabel": "label"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
