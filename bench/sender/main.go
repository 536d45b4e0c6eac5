// Command sender is the events benchmark's load: concurrent senders posting CloudEvents to the
// operator's /v1/events for a fixed time, each on one kept-alive connection of its own. It is Go so
// that the load costs the 2-core machine little: the Python senders it replaced (asyncio + httpx)
// used as much CPU as the operator they measured, and their own event loop's delays were counted
// as the operator's acknowledgement latency.
//
// It prints one JSON object: the latency of every 202 in seconds, the events acknowledged per
// Trigger index, and the other answers by status code or error.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Latencies    []float64      `json:"latencies"`
	Acknowledged map[string]int `json:"acknowledged"`
	Other        map[string]int `json:"other"`
}

func main() {
	url := flag.String("url", "", "the operator's /v1/events")
	namespace := flag.String("namespace", "", "X-Namespace")
	tokenFile := flag.String("token-file", "", "a file holding the bearer token")
	n := flag.Int("n", 1, "Triggers: event k has type bench.e<k mod n>")
	senders := flag.Int("senders", 64, "concurrent senders, one connection each")
	seconds := flag.Float64("seconds", 30, "how long to send")
	batch := flag.Int("batch", 1, "events per request (> 1: batched mode)")
	run := flag.String("run", "", "the ids' prefix, unique per run")
	flag.Parse()
	token, err := os.ReadFile(*tokenFile)
	if err != nil || *url == "" || *run == "" {
		fmt.Fprintln(os.Stderr, "sender: -url, -run and a readable -token-file are required:", err)
		os.Exit(2)
	}
	kind := "application/cloudevents+json"
	if *batch > 1 {
		kind = "application/cloudevents-batch+json"
	}
	auth := "Bearer " + string(bytes.TrimSpace(token))
	deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	var sequence atomic.Int64
	var mu sync.Mutex
	out := result{Latencies: []float64{}, Acknowledged: map[string]int{}, Other: map[string]int{}}
	var wg sync.WaitGroup
	for j := 0; j < *senders; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}}
			var latencies []float64
			acknowledged := map[int]int{}
			other := map[string]int{}
			ks := make([]int, *batch)
			for time.Now().Before(deadline) {
				var body bytes.Buffer
				if *batch > 1 {
					body.WriteByte('[')
				}
				for i := range ks {
					ks[i] = int(sequence.Add(1) - 1)
					if i > 0 {
						body.WriteByte(',')
					}
					fmt.Fprintf(&body, `{"specversion":"1.0","id":"bench-%s-%d","source":"//bench","type":"bench.e%d","count":1}`,
						*run, ks[i], ks[i]%*n)
				}
				if *batch > 1 {
					body.WriteByte(']')
				}
				request, _ := http.NewRequest(http.MethodPost, *url, &body)
				request.Header.Set("Content-Type", kind)
				request.Header.Set("X-Namespace", *namespace)
				request.Header.Set("Authorization", auth)
				started := time.Now()
				response, err := client.Do(request)
				if err != nil {
					other[fmt.Sprintf("%T", err)]++
					time.Sleep(10 * time.Millisecond) // the operator away: no busy loop
					continue
				}
				_, _ = io.Copy(io.Discard, response.Body)
				response.Body.Close()
				if response.StatusCode == http.StatusAccepted {
					latencies = append(latencies, time.Since(started).Seconds())
					for _, k := range ks {
						acknowledged[k%*n]++
					}
				} else {
					other[strconv.Itoa(response.StatusCode)]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			out.Latencies = append(out.Latencies, latencies...)
			for k, v := range acknowledged {
				out.Acknowledged[strconv.Itoa(k)] += v
			}
			for k, v := range other {
				out.Other[k] += v
			}
		}()
	}
	wg.Wait()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(1)
	}
}
