package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// corpus is a generated document collection: a seeded vocabulary of pronounceable words and
// documents whose words follow a Zipf distribution, like natural text. Every process given the same
// seed and size generates the same corpus, so leaves agree on global term statistics.
type corpus struct {
	vocab []string
	docs  [][]string // docs[id] = words
}

var syllables = []string{"ka", "lo", "mi", "ra", "te", "no", "su", "vi", "de", "po", "li", "ma", "ze", "tu", "be", "ro", "sa", "ni", "go", "fe"}

func generate(seed uint64, ndocs int) *corpus {
	r := rand.New(rand.NewPCG(seed, seed+1))
	seen := map[string]bool{}
	c := &corpus{}
	for len(c.vocab) < 5000 {
		n := 1 + r.IntN(3)
		var b strings.Builder
		for range n {
			b.WriteString(syllables[r.IntN(len(syllables))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			c.vocab = append(c.vocab, w)
		}
	}
	z := rand.NewZipf(r, 1.1, 1, uint64(len(c.vocab)-1))
	c.docs = make([][]string, ndocs)
	for d := range c.docs {
		words := make([]string, 20+r.IntN(60))
		for i := range words {
			words[i] = c.vocab[z.Uint64()]
		}
		c.docs[d] = words
	}
	return c
}

// hit is one search result.
type hit struct {
	Doc   int     `json:"doc"`
	Score float64 `json:"score"`
	Title string  `json:"title"`
}

// query is what the root sends to every leaf.
type query struct {
	Q string `json:"q"`
	K int    `json:"k"`
}

// answer is a leaf's reply: its top K hits and how many documents it holds.
type answer struct {
	Hits []hit `json:"hits"`
	Docs int   `json:"docs"`
}

type posting struct {
	doc, tf int
}

// index is one shard's inverted index, scored with BM25 using the whole corpus's document
// frequencies (every leaf knows them, since it generates the whole corpus), so scores from
// different shards compare.
type index struct {
	postings map[string][]posting
	docLen   map[int]int
	titles   map[int]string
	df       map[string]int
	n        int
	avgLen   float64
}

// buildIndex indexes the documents with id%shards == shard.
func buildIndex(c *corpus, shard, shards int) *index {
	ix := &index{postings: map[string][]posting{}, docLen: map[int]int{}, titles: map[int]string{}, df: map[string]int{}, n: len(c.docs)}
	total := 0
	for id, words := range c.docs {
		total += len(words)
		tf := map[string]int{}
		for _, w := range words {
			tf[w]++
		}
		for w := range tf {
			ix.df[w]++
		}
		if id%shards != shard {
			continue
		}
		ix.docLen[id] = len(words)
		ix.titles[id] = strings.Join(words[:5], " ")
		for w, n := range tf {
			ix.postings[w] = append(ix.postings[w], posting{id, n})
		}
	}
	ix.avgLen = float64(total) / float64(max(1, len(c.docs)))
	return ix
}

// search returns the top k documents of this shard for the query's terms (OR, BM25).
func (ix *index) search(q string, k int) []hit {
	const k1, b = 1.2, 0.75
	scores := map[int]float64{}
	for _, term := range strings.Fields(strings.ToLower(q)) {
		df := ix.df[term]
		if df == 0 {
			continue
		}
		idf := math.Log(1 + (float64(ix.n)-float64(df)+0.5)/(float64(df)+0.5))
		for _, p := range ix.postings[term] {
			tf := float64(p.tf)
			norm := tf * (k1 + 1) / (tf + k1*(1-b+b*float64(ix.docLen[p.doc])/ix.avgLen))
			scores[p.doc] += idf * norm
		}
	}
	hits := make([]hit, 0, len(scores))
	for d, s := range scores {
		hits = append(hits, hit{Doc: d, Score: math.Round(s*1e4) / 1e4, Title: ix.titles[d]})
	}
	sort.Slice(hits, func(i, j int) bool { return better(hits[i], hits[j]) })
	if len(hits) > k {
		hits = hits[:k]
	}
	return hits
}

// better orders hits by score, then by document id, so results are deterministic.
func better(a, b hit) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.Doc < b.Doc
}
