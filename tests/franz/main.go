// A consumer-group member process for tests (franz-go).
//
// Usage: franz-member BOOTSTRAP GROUP TOPIC
//
// Prints the same JSON lines as tests/group_member.py: assigned / revoked / lost
// (franz-go's default balancer is cooperative-sticky, so these are incremental),
// record, and committed after each record's synchronous commit. SIGTERM leaves the
// group and closes the client.
package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

var out sync.Mutex

func emit(event map[string]any) {
	out.Lock()
	defer out.Unlock()
	line, _ := json.Marshal(event)
	os.Stdout.Write(append(line, '\n'))
}

func partitions(m map[string][]int32) []int32 {
	ps := []int32{}
	for _, p := range m {
		ps = append(ps, p...)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func main() {
	bootstrap, group, topic := os.Args[1], os.Args[2], os.Args[3]
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit(map[string]any{"event": "assigned", "partitions": partitions(m)})
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, m map[string][]int32) {
			emit(map[string]any{"event": "revoked", "partitions": partitions(m)})
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit(map[string]any{"event": "lost", "partitions": partitions(m)})
		}),
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	emit(map[string]any{"event": "started"})
	for ctx.Err() == nil {
		fetches := client.PollFetches(ctx)
		fetches.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				emit(map[string]any{"event": "error", "error": err.Error()})
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			emit(map[string]any{"event": "record", "partition": r.Partition, "offset": r.Offset,
				"value": string(r.Value)})
			if err := client.CommitRecords(context.Background(), r); err != nil {
				emit(map[string]any{"event": "commit_failed", "partition": r.Partition})
				return
			}
			emit(map[string]any{"event": "committed", "partition": r.Partition, "offset": r.Offset + 1})
		})
	}
	client.LeaveGroup()
	client.Close()
	emit(map[string]any{"event": "closed"})
}
