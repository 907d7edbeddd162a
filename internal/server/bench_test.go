package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/internal/server"
)

// BenchmarkAppendOverHTTP measures single-event appends through the API
// (auth, decoding, ownership check, validation, group commit) from
// 16 clients per CPU, each to its own stream.
func BenchmarkAppendOverHTTP(b *testing.B) {
	e := newEnv(b, server.Limits{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(16) // 32 clients on 2 cores: enough for group commit to batch
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := "bench-" + uuid.NewString()
		for pb.Next() {
			body := fmt.Sprintf(`{"type":"course.generation.requested","payload":{"course_id":"%s","topic":"Go","attempt":1,"language":"en"}}`, uuid.New())
			req, _ := http.NewRequest("POST", e.srv.URL+"/streams/"+stream+"/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+acmeToken)
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 201 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
