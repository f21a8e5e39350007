// Command plot renders the bench scripts' CSV results as SVG charts for BENCHMARKS.md.
//
//	plot bars -in results.csv -out chart.svg -title T -y LABEL   rows: group,series,value
//	plot grouped -in results.csv -out chart.svg -title T -x LABEL -y LABEL   rows: group,series,value
//	plot cdf  -in samples.csv -out chart.svg -title T -x LABEL [-tail]   rows: series,value (one sample a row)
//
// bars draws one tile per group (for example "rps" and "p99 ms"), each with its own y scale, with
// one bar per series (for example "haproxy", "podblocks"), in the order they first appear. grouped
// draws one chart with a cluster per group (for example one per offered rate) on a shared y axis,
// a bar per series, and a legend; bars are labelled with their values as written in the CSV. cdf
// draws the empirical cumulative distribution of each series' samples (x axis logarithmic when
// they are positive and span more than a factor of 20); with -tail it adds a second tile with the y axis in nines
// (p50, p90, p99, ...) so the tail is not squashed against the top.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
	// Liberation Sans has Arial's metrics, so text measured here (legend spacing, title fit) keeps
	// its size in viewers that substitute Arial or Helvetica for it.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	plotter.DefaultFont = plot.DefaultFont
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: plot bars|cdf -in FILE.csv -out FILE.svg [-title T] [-x L] [-y L]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	in := fs.String("in", "", "CSV input")
	out := fs.String("out", "", "SVG output")
	title := fs.String("title", "", "chart title")
	xl := fs.String("x", "", "x axis label")
	yl := fs.String("y", "", "y axis label")
	tail := fs.Bool("tail", false, "cdf: add a tile with the y axis in nines")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return errors.New("-in and -out are required")
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := readRows(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	switch args[0] {
	case "bars":
		plots, legend, err := bars(rows, *yl)
		if err != nil {
			return err
		}
		return render(plots, legend, *title, *out, 3.2*vg.Inch)
	case "grouped":
		p, legend, err := grouped(rows)
		if err != nil {
			return err
		}
		p.X.Label.Text, p.Y.Label.Text = *xl, *yl
		return render([]*plot.Plot{p}, legend, *title, *out, 8*vg.Inch)
	case "cdf":
		samples, order, err := readSamples(rows)
		if err != nil {
			return err
		}
		p := plot.New()
		p.X.Label.Text, p.Y.Label.Text = *xl, *yl
		legend, err := cdf(p, samples, order, false)
		if err != nil {
			return err
		}
		if !*tail {
			return render([]*plot.Plot{p}, legend, *title, *out, 8*vg.Inch)
		}
		p.Title.Text = "CDF"
		q := plot.New()
		q.Title.Text, q.X.Label.Text, q.Y.Label.Text = "tail: y axis in nines", *xl, "percentile"
		if _, err := cdf(q, samples, order, true); err != nil {
			return err
		}
		return render([]*plot.Plot{p, q}, legend, *title, *out, 4.5*vg.Inch)
	}
	return fmt.Errorf("unknown chart %q: want bars, grouped or cdf", args[0])
}

// entry is one legend item: a name and its colour swatch or line.
type entry struct {
	name  string
	thumb plot.Thumbnailer
}

// render draws plots side by side under one title, with the legend entries in rows below them,
// as SVG.
func render(plots []*plot.Plot, legend []entry, title, out string, tileWidth vg.Length) error {
	const titleH, rowH = 0.4 * vg.Inch, 0.25 * vg.Inch
	width := vg.Length(len(plots)) * tileWidth
	// Lay the legend out left to right, wrapping, to know how many rows it takes.
	type placed struct {
		l    plot.Legend
		x    vg.Length
		line int
	}
	var items []placed
	x, line := vg.Length(0), 0
	for _, e := range legend {
		l := plot.NewLegend()
		l.Left, l.Top = true, true
		l.Add(e.name, e.thumb)
		// Widths are measured with the chart font; viewers often substitute a wider one.
		w := l.ThumbnailWidth + 1.15*l.TextStyle.Rectangle(" "+e.name).Max.X + 0.2*vg.Inch
		if x > 0 && x+w > width-0.4*vg.Inch {
			x, line = 0, line+1
		}
		items = append(items, placed{l, x, line})
		x += w
	}
	legendH := vg.Length(0)
	if len(items) > 0 {
		legendH = vg.Length(line+1)*rowH + 0.1*vg.Inch
	}
	height := 3.6*vg.Inch + legendH
	if title != "" {
		height += titleH
	}
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	if title != "" {
		top := plot.New()
		top.Title.Text = title
		// Shrink a long title to fit (with room for a viewer's wider substitute font).
		for ts := &top.Title.TextStyle; 1.15*ts.Rectangle(title).Max.X > width-0.3*vg.Inch && ts.Font.Size > vg.Points(8); {
			ts.Font.Size -= vg.Points(0.5)
		}
		top.HideAxes()
		top.Draw(draw.Crop(dc, 0, 0, height-titleH, 0))
		dc = draw.Crop(dc, 0, 0, 0, -titleH)
	}
	if len(items) > 0 {
		strip := draw.Crop(dc, 0.4*vg.Inch, 0, 0, legendH-(dc.Max.Y-dc.Min.Y))
		for _, it := range items {
			it.l.XOffs = it.x
			it.l.YOffs = -vg.Length(it.line) * rowH
			it.l.Draw(strip)
		}
		dc = draw.Crop(dc, 0, 0, legendH, 0)
	}
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readRows reads CSV records, skipping a header row whose last field is not a number.
func readRows(r io.Reader) ([][]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		if _, err := strconv.ParseFloat(recs[0][len(recs[0])-1], 64); err != nil {
			recs = recs[1:]
		}
	}
	if len(recs) == 0 {
		return nil, errors.New("no data rows")
	}
	return recs, nil
}

// table is group,series,value rows: groups and series in the order they first appear, and each
// value both as a number and as the text it was written as (bar labels show that text, so a chart
// shows exactly the figures the run printed).
type table struct {
	groups, series []string
	vals           map[[2]string]float64
	texts          map[[2]string]string
}

func readTable(rows [][]string) (*table, error) {
	t := &table{vals: map[[2]string]float64{}, texts: map[[2]string]string{}}
	seenG, seenS := map[string]bool{}, map[string]bool{}
	for i, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("row %d: want group,series,value", i+1)
		}
		v, err := strconv.ParseFloat(r[2], 64)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i+1, err)
		}
		k := [2]string{r[0], r[1]}
		if _, dup := t.vals[k]; dup {
			return nil, fmt.Errorf("row %d: second value for group %q, series %q", i+1, r[0], r[1])
		}
		if !seenG[r[0]] {
			seenG[r[0]] = true
			t.groups = append(t.groups, r[0])
		}
		if !seenS[r[1]] {
			seenS[r[1]] = true
			t.series = append(t.series, r[1])
		}
		t.vals[k], t.texts[k] = v, r[2]
	}
	return t, nil
}

// swatch is a legend thumbnail: a filled square of one colour.
func swatch(i int) plot.Thumbnailer {
	b, _ := plotter.NewBarChart(plotter.Values{1}, 1)
	b.Color = plotutil.Color(i)
	b.LineStyle.Width = 0
	return b
}

// valueLabels puts each value's text centred just above its bar.
func valueLabels(xs, ys []float64, texts []string) (*plotter.Labels, error) {
	d := plotter.XYLabels{Labels: texts}
	for i := range xs {
		d.XYs = append(d.XYs, plotter.XY{X: xs[i], Y: ys[i]})
	}
	l, err := plotter.NewLabels(d)
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XCenter
		l.TextStyle[i].Font.Size = vg.Points(7.5)
	}
	l.Offset = vg.Point{Y: vg.Points(2)}
	return l, nil
}

// bars makes one bar chart per group, each with its own y scale, with a bar per series, each bar
// labelled with its value; the series are named in the legend.
func bars(rows [][]string, ylabel string) ([]*plot.Plot, []entry, error) {
	t, err := readTable(rows)
	if err != nil {
		return nil, nil, err
	}
	var plots []*plot.Plot
	for _, g := range t.groups {
		p := plot.New()
		p.Title.Text = g
		p.Y.Label.Text = ylabel
		var xs, ys []float64
		var texts []string
		top := 0.0
		for i, s := range t.series {
			v, ok := t.vals[[2]string{g, s}]
			if !ok {
				continue
			}
			b, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(30))
			if err != nil {
				return nil, nil, err
			}
			b.Color = plotutil.Color(i)
			b.LineStyle.Width = 0
			b.XMin = float64(i)
			p.Add(b)
			xs, ys, texts = append(xs, float64(i)), append(ys, v), append(texts, t.texts[[2]string{g, s}])
			top = math.Max(top, v)
		}
		l, err := valueLabels(xs, ys, texts)
		if err != nil {
			return nil, nil, err
		}
		p.Add(l)
		p.Y.Min, p.Y.Max = 0, top*1.12 // room for the labels
		p.Y.Tick.Marker = plainTicks{}
		p.X.Min, p.X.Max = -0.6, float64(len(t.series))-0.4
		p.HideX()
		p.Add(hgrid())
		plots = append(plots, p)
	}
	var legend []entry
	for i, s := range t.series {
		legend = append(legend, entry{s, swatch(i)})
	}
	return plots, legend, nil
}

// plainTicks are gonum's default ticks labelled with the shortest exact decimal ("25000", not
// "25000.00").
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}

// hgrid is a grid of horizontal lines only (vertical ones would cut through the bars).
func hgrid() *plotter.Grid {
	g := plotter.NewGrid()
	g.Vertical.Width = 0
	return g
}

// grouped makes one bar chart with a cluster of bars per group and a bar per series, each bar
// labelled with its value; the series are named in the legend.
func grouped(rows [][]string) (*plot.Plot, []entry, error) {
	t, err := readTable(rows)
	if err != nil {
		return nil, nil, err
	}
	p := plot.New()
	n := float64(len(t.series))
	width := vg.Points(math.Min(36, 420/(float64(len(t.groups))*n)))
	top := 0.0
	var legend []entry
	for i, s := range t.series {
		vs := make(plotter.Values, len(t.groups))
		var xs []float64
		var texts []string
		for j, g := range t.groups {
			v, ok := t.vals[[2]string{g, s}]
			if !ok {
				return nil, nil, fmt.Errorf("group %q has no value for series %q", g, s)
			}
			vs[j] = v
			texts = append(texts, t.texts[[2]string{g, s}])
			top = math.Max(top, v)
		}
		b, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, nil, err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = vg.Length(float64(i)-(n-1)/2) * width
		p.Add(b)
		// Labels are placed in data coordinates; a bar's offset is in points, so the label's
		// offset is set per series instead.
		for j := range t.groups {
			xs = append(xs, float64(j))
		}
		l, err := valueLabels(xs, vs, texts)
		if err != nil {
			return nil, nil, err
		}
		l.Offset.X = b.Offset
		p.Add(l)
		legend = append(legend, entry{s, swatch(i)})
	}
	p.Y.Min, p.Y.Max = 0, top*1.1
	p.Y.Tick.Marker = plainTicks{}
	p.X.Min, p.X.Max = -0.5, float64(len(t.groups))-0.5
	p.NominalX(t.groups...)
	p.Add(hgrid())
	return p, legend, nil
}

// readSamples groups series,value rows by series, in the order the series first appear.
func readSamples(rows [][]string) (map[string][]float64, []string, error) {
	samples := map[string][]float64{}
	var order []string
	for i, r := range rows {
		if len(r) != 2 {
			return nil, nil, fmt.Errorf("row %d: want series,value", i+1)
		}
		v, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("row %d: %w", i+1, err)
		}
		if _, ok := samples[r[0]]; !ok {
			order = append(order, r[0])
		}
		samples[r[0]] = append(samples[r[0]], v)
	}
	return samples, order, nil
}

// cdf adds a step line per series: the fraction of samples <= x, on a log x axis when the samples
// are all positive and span more than a factor of 20, else a linear one.
// With nines, the y axis shows -log10(1-F) (0 = p0, 1 = p90, 2 = p99), and the last sample (F = 1)
// is drawn at the nines one more sample would reach, 1-1/(n+1), so it stays on the chart.
func cdf(p *plot.Plot, samples map[string][]float64, order []string, nines bool) ([]entry, error) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, xs := range samples {
		for _, x := range xs {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	if lo > 0 && hi/lo > 20 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Min, p.X.Max = lo, hi
	}
	maxY := 0.0
	var legend []entry
	for i, name := range order {
		xs := slices.Clone(samples[name])
		sort.Float64s(xs)
		n := float64(len(xs))
		pts := make(plotter.XYs, 0, 2*len(xs))
		for j, x := range xs {
			lo, hi := float64(j)/n, float64(j+1)/n
			if nines {
				lo = -math.Log10(1 - lo)
				hi = -math.Log10(1 - math.Min(hi, 1-1/(n+1)))
			}
			pts = append(pts, plotter.XY{X: x, Y: lo}, plotter.XY{X: x, Y: hi})
			maxY = math.Max(maxY, hi)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i / len(plotutil.SoftColors))
		p.Add(l)
		legend = append(legend, entry{fmt.Sprintf("%s (n=%d)", name, len(xs)), l})
	}
	p.Y.Min = 0
	if nines {
		p.Y.Max = math.Ceil(maxY)
		p.Y.Tick.Marker = ninesTicks{}
	} else {
		p.Y.Max = 1
	}
	p.Add(plotter.NewGrid())
	return legend, nil
}

// ninesTicks labels a -log10(1-F) axis as percentiles: 0 p0, 1 p90, 2 p99, 3 p99.9, with minor
// ticks at p50, p95, p99.5.
type ninesTicks struct{}

func (ninesTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for k := math.Ceil(min); k <= max; k++ {
		label := "p0"
		if k > 0 {
			label = "p" + strconv.FormatFloat(100*(1-math.Pow(10, -k)), 'f', -1, 64)
		}
		ts = append(ts, plot.Tick{Value: k, Label: label})
		if k+1 <= max {
			ts = append(ts, plot.Tick{Value: k + math.Log10(2)})
		}
	}
	return ts
}
