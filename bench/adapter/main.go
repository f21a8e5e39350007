// Command adapter-bench compares the podblocks statsd adapter with statsd_exporter: a UDP sender
// of 10-line packets at fixed rates, the two receivers alternating with the same mapping config,
// and the lines sent counted against what the receivers' counters show on /metrics.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type target struct {
	name string
	bin  string
}

type result struct {
	sent, counted float64
	elapsed       time.Duration
}

func main() {
	var (
		exporterBin = flag.String("statsd_exporter", "", "statsd_exporter binary")
		adapterBin  = flag.String("podblocks", "", "podblocks statsd-adapter binary")
		mapping     = flag.String("mapping", "mapping.yml", "mapping config for both")
		ratesFlag   = flag.String("rates", "100000,200000,400000,800000,0", "lines/s to send (0: as fast as the sender can)")
		runs        = flag.Int("runs", 3, "alternating runs per rate and receiver")
		duration    = flag.Duration("duration", 5*time.Second, "send time per run")
		readBuffer  = flag.Int("read-buffer", 32<<20, "--statsd.read-buffer for both receivers")
		csvDir      = flag.String("csv", "", "also write the medians to DIR/adapter-processed.grouped.csv and DIR/adapter-drop.grouped.csv (for bench/plots.sh)")
	)
	flag.Parse()
	start := time.Now()
	targets := []target{{"statsd_exporter", *exporterBin}, {"podblocks", *adapterBin}}
	var rates []int
	for _, s := range strings.Split(*ratesFlag, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad -rates:", err)
			os.Exit(2)
		}
		rates = append(rates, r)
	}
	fmt.Printf("%-10s %-16s %12s %12s %9s %14s\n", "rate", "receiver", "sent", "counted", "dropped", "processed/s")
	type key struct {
		rate int
		name string
	}
	all := map[key][]result{}
	for _, rate := range rates {
		for run := range *runs {
			order := targets
			if run%2 == 1 {
				order = []target{targets[1], targets[0]}
			}
			for _, tg := range order {
				res, err := runOnce(tg, *mapping, rate, *duration, *readBuffer)
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s at %d/s: %v\n", tg.name, rate, err)
					os.Exit(1)
				}
				all[key{rate, tg.name}] = append(all[key{rate, tg.name}], res)
				fmt.Printf("%-10s %-16s %12.0f %12.0f %8.2f%% %14.0f\n", rateName(rate), tg.name, res.sent, res.counted,
					100*(res.sent-res.counted)/res.sent, res.counted/res.elapsed.Seconds())
			}
		}
	}
	fmt.Printf("\nmedians of %d runs, %v each (drop %% = 1 - counted/sent)\n", *runs, *duration)
	fmt.Printf("%-10s %14s %14s %14s %14s %10s\n", "rate", "exporter drop", "podblocks drop", "exporter /s", "podblocks /s", "ratio")
	var processed, dropped strings.Builder
	for _, rate := range rates {
		e, p := all[key{rate, "statsd_exporter"}], all[key{rate, "podblocks"}]
		ed, pd := median(e, dropPct), median(p, dropPct)
		et, pt := median(e, perSec), median(p, perSec)
		fmt.Printf("%-10s %13.2f%% %13.2f%% %14.0f %14.0f %9.2fx\n", rateName(rate), ed, pd, et, pt, pt/et)
		// The same figures, rounded as printed, as group,series,value rows.
		fmt.Fprintf(&processed, "%s,statsd_exporter,%.0f\n%s,podblocks,%.0f\n", rateName(rate), et, rateName(rate), pt)
		fmt.Fprintf(&dropped, "%s,statsd_exporter,%.2f\n%s,podblocks,%.2f\n", rateName(rate), ed, rateName(rate), pd)
	}
	if *csvDir != "" {
		when := fmt.Sprintf("medians of %d x %v, %s", *runs, *duration, start.UTC().Format("2006-01-02 15:04 UTC"))
		files := []struct{ name, head, rows string }{
			{"adapter-processed.grouped.csv", "# statsd lines processed per second (" + when + ") | lines sent per second (max: as fast as one sender can) | lines processed/s\n", processed.String()},
			{"adapter-drop.grouped.csv", "# statsd lines dropped (" + when + ") | lines sent per second (max: as fast as one sender can) | dropped %\n", dropped.String()},
		}
		for _, f := range files {
			path := filepath.Join(*csvDir, f.name)
			if err := os.WriteFile(path, []byte(f.head+"group,series,value\n"+f.rows), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "-csv:", err)
				os.Exit(1)
			}
			fmt.Println("wrote", path)
		}
	}
}

func rateName(r int) string {
	if r == 0 {
		return "max"
	}
	return strconv.Itoa(r)
}

func dropPct(r result) float64 { return 100 * (r.sent - r.counted) / r.sent }
func perSec(r result) float64  { return r.counted / r.elapsed.Seconds() }

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func freeAddr(network string) (string, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.LocalAddr().String(), nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func runOnce(tg target, mapping string, rate int, d time.Duration, readBuffer int) (result, error) {
	udp, err := freeAddr("udp")
	if err != nil {
		return result{}, err
	}
	web, err := freeAddr("tcp")
	if err != nil {
		return result{}, err
	}
	var logs bytes.Buffer
	cmd := exec.Command(tg.bin, "--statsd.listen-udp="+udp, "--statsd.listen-tcp=",
		"--statsd.mapping-config="+mapping, "--web.listen-address="+web, "--web.telemetry-path=/metrics",
		"--statsd.read-buffer="+strconv.Itoa(readBuffer), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	url := "http://" + web + "/metrics"
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := scrapeSum(url, "bench_requests_total"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%s did not serve /metrics: %s", tg.name, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sent, elapsed, err := send(udp, rate, d)
	if err != nil {
		return result{}, err
	}
	// Wait until the count stops moving (queued packets are processed), at most 30s.
	var last float64 = -1
	stable := time.Now()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		n, err := scrapeSum(url, "bench_requests_total")
		if err != nil {
			continue
		}
		if n != last {
			last, stable = n, time.Now()
			continue
		}
		if n >= sent || time.Since(stable) > time.Second {
			break
		}
	}
	return result{sent: sent, counted: max(last, 0), elapsed: elapsed}, nil
}

// send sends 10-line packets of counter lines to addr at rate lines/s (0: as fast as one
// goroutine can) for d, and returns the lines handed to the kernel without error.
func send(addr string, rate int, d time.Duration) (float64, time.Duration, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	const linesPerPacket = 10
	var packets [][]byte
	for p := range 20 {
		var b strings.Builder
		for l := range linesPerPacket {
			i := p*linesPerPacket + l
			if l > 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "bench.svc%d.requests:1|c|#code:%d,route:/api/v1/r%d", i%10, 200+i%3, i%20)
		}
		packets = append(packets, []byte(b.String()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var sent int
	for i := 0; ctx.Err() == nil; i++ {
		if _, err := c.Write(packets[i%len(packets)]); err == nil {
			sent += linesPerPacket
		}
		if rate > 0 && i%8 == 0 {
			due := time.Duration(float64(sent) / float64(rate) * float64(time.Second))
			if ahead := due - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return float64(sent), time.Since(start), nil
}

// scrapeSum fetches a text exposition and adds up the samples of the counter family name.
func scrapeSum(url, name string) (float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	if f := fams[name]; f != nil {
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}
