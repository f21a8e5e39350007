// Command plot renders the bench scripts' CSV results as SVG charts for BENCHMARKS.md.
//
//	plot bars -in results.csv -out chart.svg -title T -y LABEL   rows: group,series,value
//	plot cdf  -in samples.csv -out chart.svg -title T -x LABEL   rows: series,value (one sample a row)
//
// bars draws one cluster of bars per group (for example "rps" and "p99 ms") with one bar per series
// (for example "haproxy", "podblocks"), in the order they first appear. cdf draws the empirical
// cumulative distribution of each series' samples on a logarithmic x axis.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

func main() {
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
		plots, err := bars(rows, *yl)
		if err != nil {
			return err
		}
		return saveTiles(plots, *title, *out)
	case "cdf":
		p := plot.New()
		p.Title.Text, p.X.Label.Text, p.Y.Label.Text = *title, *xl, *yl
		if err := cdf(p, rows); err != nil {
			return err
		}
		return p.Save(8*vg.Inch, 4.5*vg.Inch, *out)
	}
	return fmt.Errorf("unknown chart %q: want bars or cdf", args[0])
}

// saveTiles draws plots side by side, under one title, as SVG.
func saveTiles(plots []*plot.Plot, title, out string) error {
	width := vg.Length(len(plots)) * 3.2 * vg.Inch
	height := 4 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	if title != "" {
		top := plot.New()
		top.Title.Text = title
		top.HideAxes()
		top.Draw(draw.Crop(dc, 0, 0, height-0.4*vg.Inch, 0))
		dc = draw.Crop(dc, 0, 0, 0, -0.4*vg.Inch)
	}
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	grid := [][]*plot.Plot{plots}
	canvases := plot.Align(grid, tiles, dc)
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

// bars makes one bar chart per group, each with its own y scale, with a bar per series.
func bars(rows [][]string, ylabel string) ([]*plot.Plot, error) {
	var groups, series []string
	vals := map[[2]string]float64{}
	seenG, seenS := map[string]bool{}, map[string]bool{}
	for i, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("row %d: want group,series,value", i+1)
		}
		v, err := strconv.ParseFloat(r[2], 64)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i+1, err)
		}
		if !seenG[r[0]] {
			seenG[r[0]] = true
			groups = append(groups, r[0])
		}
		if !seenS[r[1]] {
			seenS[r[1]] = true
			series = append(series, r[1])
		}
		vals[[2]string{r[0], r[1]}] = v
	}
	var plots []*plot.Plot
	for _, g := range groups {
		p := plot.New()
		p.Title.Text = g
		p.Y.Label.Text = ylabel
		p.Y.Min = 0
		var names []string
		for i, s := range series {
			v, ok := vals[[2]string{g, s}]
			if !ok {
				continue
			}
			b, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(28))
			if err != nil {
				return nil, err
			}
			b.Color = plotutil.Color(i)
			b.LineStyle.Width = 0
			b.XMin = float64(len(names))
			p.Add(b)
			names = append(names, s)
		}
		p.NominalX(names...)
		plots = append(plots, p)
	}
	return plots, nil
}

func cdf(p *plot.Plot, rows [][]string) error {
	samples := map[string][]float64{}
	var order []string
	for i, r := range rows {
		if len(r) != 2 {
			return fmt.Errorf("row %d: want series,value", i+1)
		}
		v, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			return fmt.Errorf("row %d: %w", i+1, err)
		}
		if _, ok := samples[r[0]]; !ok {
			order = append(order, r[0])
		}
		samples[r[0]] = append(samples[r[0]], v)
	}
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	for i, name := range order {
		xs := samples[name]
		sort.Float64s(xs)
		pts := make(plotter.XYs, 0, len(xs))
		for j, x := range xs {
			pts = append(pts, plotter.XY{X: math.Max(x, 1e-3), Y: float64(j+1) / float64(len(xs))})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
	}
	p.Legend.Left, p.Legend.Top = false, false
	p.Add(plotter.NewGrid())
	return nil
}
