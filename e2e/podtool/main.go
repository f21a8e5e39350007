// Command podtool is the e2e suite's stand-in application: the container that shares a pod with a
// podblocks sidecar, ambassador or worker. It is built static and shipped in an image FROM scratch
// like the examples (images/build.sh podtool).
//
//	podtool logwriter -dir /logs -lines 3000 -rotate-every 500 -interval 1ms
//	    appends "seq=000001" ... to DIR/app.log and rotates like logrotate (app.log -> app.log.1,
//	    app.log.1 -> app.log.2, ...; nothing deleted), then writes DIR/writer.done.
//	podtool mcapp -listen :8000 -upstream 127.0.0.1:22121
//	    HTTP GET /set?key=K&value=V and GET /get?key=K, each one memcache text command sent to the
//	    upstream (the ambassador on the pod's localhost); answers {"reply":"<first line>","value":"..."}.
//	podtool pause
//	    the pod's first container: holds the network and PID namespaces until SIGTERM or SIGINT.
//	podtool workitem -out /out -sleep 200ms
//	    a workqueue ExecWorker command: reads WORK_ITEM_FILE (the item name), sleeps, records the attempt
//	    under OUT/attempts/ and marks the item done with OUT/done/<name> (written atomically).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podtool logwriter|mcapp|workitem [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "logwriter":
		err = logwriter(os.Args[2:])
	case "mcapp":
		err = mcapp(os.Args[2:])
	case "pause":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
	case "workitem":
		err = workitem(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podtool:", err)
		os.Exit(1)
	}
}

func logwriter(args []string) error {
	fs := flag.NewFlagSet("logwriter", flag.ContinueOnError)
	dir := fs.String("dir", "/logs", "log directory")
	lines := fs.Int("lines", 3000, "lines to write")
	every := fs.Int("rotate-every", 500, "rotate after this many lines (0: never)")
	interval := fs.Duration("interval", time.Millisecond, "pause between lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name := filepath.Join(*dir, "app.log")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	rotations := 0
	for i := 1; i <= *lines; i++ {
		if _, err := fmt.Fprintf(f, "seq=%06d\n", i); err != nil {
			return err
		}
		if *every > 0 && i%*every == 0 && i < *lines {
			if err := f.Close(); err != nil {
				return err
			}
			for k := rotations; k >= 1; k-- {
				if err := os.Rename(fmt.Sprintf("%s.%d", name, k), fmt.Sprintf("%s.%d", name, k+1)); err != nil {
					return err
				}
			}
			if err := os.Rename(name, name+".1"); err != nil {
				return err
			}
			rotations++
			if f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
				return err
			}
		}
		time.Sleep(*interval)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*dir, "writer.done"), []byte(strconv.Itoa(*lines)+"\n"), 0o644)
}

func mcapp(args []string) error {
	fs := flag.NewFlagSet("mcapp", flag.ContinueOnError)
	listen := fs.String("listen", ":8000", "HTTP address")
	upstream := fs.String("upstream", "127.0.0.1:22121", "memcache server (the ambassador)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		k, v := r.URL.Query().Get("key"), r.URL.Query().Get("value")
		reply, _, err := memcache(*upstream, fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", k, len(v), v), false)
		answer(w, reply, "", err)
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		reply, value, err := memcache(*upstream, "get "+r.URL.Query().Get("key")+"\r\n", true)
		answer(w, reply, value, err)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

func answer(w http.ResponseWriter, reply, value string, err error) {
	w.Header().Set("Content-Type", "application/json")
	out := map[string]string{"reply": reply, "value": value}
	if err != nil {
		out["error"] = err.Error()
	}
	_ = json.NewEncoder(w).Encode(out)
}

// memcache sends one command on a fresh connection and reads the first reply line; for a get it
// also reads the value and the END line.
func memcache(addr, cmd string, get bool) (reply, value string, err error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !get || !strings.HasPrefix(line, "VALUE ") {
		return line, "", nil
	}
	f := strings.Fields(line)
	if len(f) < 4 {
		return line, "", errors.New("short VALUE line")
	}
	n, err := strconv.Atoi(f[3])
	if err != nil {
		return line, "", err
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		return line, "", err
	}
	end, err := br.ReadString('\n')
	if err != nil {
		return line, "", err
	}
	return strings.TrimRight(end, "\r\n"), string(buf[:n]), nil
}

func workitem(args []string) error {
	fs := flag.NewFlagSet("workitem", flag.ContinueOnError)
	out := fs.String("out", "/out", "results directory")
	sleep := fs.Duration("sleep", 200*time.Millisecond, "work time per item")
	if err := fs.Parse(args); err != nil {
		return err
	}
	payload, err := os.ReadFile(os.Getenv("WORK_ITEM_FILE"))
	if err != nil {
		return err
	}
	name := strings.TrimSpace(string(payload))
	if name == "" || strings.ContainsAny(name, "/.") {
		return fmt.Errorf("bad item name %q", name)
	}
	for _, d := range []string{"attempts", "done"} {
		if err := os.MkdirAll(filepath.Join(*out, d), 0o755); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	attempt := fmt.Sprintf("%s.%s.%d", name, host, time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(*out, "attempts", attempt), nil, 0o644); err != nil {
		return err
	}
	time.Sleep(*sleep)
	tmp := filepath.Join(*out, "done", "."+attempt)
	if err := os.WriteFile(tmp, []byte(host+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(*out, "done", name))
}
