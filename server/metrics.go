package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldcast/goldcast/images/store"
)

// metrics are the server's Prometheus series, in a registry of its own
// (never the library's global one).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	captures  *prometheus.CounterVec
	bytesIn   prometheus.Counter
	bytesOut  *prometheus.CounterVec
	rsyncConn prometheus.Counter
}

func newMetrics(s *store.Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcast_http_requests_total", Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
		captures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcast_captures_total", Help: "Finished captures by result (published, unchanged, failed).",
		}, []string{"result"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldcast_capture_bytes_received_total", Help: "Request body bytes received by capture uploads.",
		}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcast_image_bytes_sent_total", Help: "Image bytes sent, by transport (stream, delta).",
		}, []string{"transport"}),
		rsyncConn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldcast_rsync_connections_total", Help: "Connections accepted by the rsync daemon.",
		}),
	}
	images := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "goldcast_images", Help: "Images in the store.",
	}, func() float64 {
		imgs, err := s.Images()
		if err != nil {
			return -1
		}
		return float64(len(imgs))
	})
	m.reg.MustRegister(m.requests, m.captures, m.bytesIn, m.bytesOut, m.rsyncConn, images,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// instrument counts requests of a route by status code.
func (m *metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		m.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	}
}
