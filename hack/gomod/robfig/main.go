// cron-oracle answers, for each input line "<expression>\t<after RFC 3339>\t<count>", with the next
// <count> fire times that robfig/cron v3's standard parser (the one Kubernetes CronJob uses) gives,
// in UTC, separated by spaces; or "ERR <message>" when the expression does not parse. A time that
// never comes (robfig gives up after five years) is printed as "never".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.Split(in.Text(), "\t")
		if len(parts) != 3 {
			fmt.Fprintln(out, "ERR bad input line")
			continue
		}
		after, err := time.Parse(time.RFC3339, parts[1])
		count, err2 := strconv.Atoi(parts[2])
		if err != nil || err2 != nil {
			fmt.Fprintln(out, "ERR bad input line")
			continue
		}
		schedule, err := cron.ParseStandard(parts[0])
		if err != nil {
			fmt.Fprintln(out, "ERR", err)
			continue
		}
		times := make([]string, 0, count)
		t := after.UTC()
		for i := 0; i < count; i++ {
			t = schedule.Next(t)
			if t.IsZero() {
				times = append(times, "never")
				break
			}
			times = append(times, t.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(out, strings.Join(times, " "))
	}
}
