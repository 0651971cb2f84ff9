package auth

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"regie/storage"
)

// counter is a fixed-window rate-limit counter in Records.
type counter struct {
	N     int       `json:"n"`
	Start time.Time `json:"s"`
}

// hit counts one event for key in a window and reports whether the count is
// still within limit. Counters live in Records, so every instance shares
// them.
func (b *Broker) hit(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	for attempt := range 40 {
		if attempt > 0 {
			// another request updated the counter first: back off a little,
			// at random, so that a burst from one address sorts itself out
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(time.Duration(rand.IntN(1000*min(attempt, 10))) * time.Microsecond):
			}
		}
		var c counter
		v, err := getJSON(ctx, b.recs, kindRate, key, &c)
		now := b.now()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			c, v = counter{N: 0, Start: now}, 0
		case err != nil:
			return false, err
		}
		if now.Sub(c.Start) >= window {
			c = counter{Start: now}
		}
		c.N++
		if _, err := putJSON(ctx, b.recs, kindRate, key, c, c.Start.Add(window), v); err != nil {
			if errors.Is(err, storage.ErrVersionConflict) || errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return false, err
		}
		return c.N <= limit, nil
	}
	return false, errors.New("auth: rate limit: contention")
}

// count returns the current count of key without adding to it.
func (b *Broker) count(ctx context.Context, key string, window time.Duration) int {
	var c counter
	if _, err := getJSON(ctx, b.recs, kindRate, key, &c); err != nil || b.now().Sub(c.Start) >= window {
		return 0
	}
	return c.N
}

// allow applies a per-IP limit to a step; when exceeded it answers 429.
func (b *Broker) allow(ctx context.Context, w http.ResponseWriter, r *http.Request, step, ip string, limit int, window time.Duration) bool {
	ok, err := b.hit(ctx, "ip."+step+"."+ip, limit, window)
	if err != nil {
		b.log.Error("auth: rate limit", "err", err)
		b.ui.errorPage(w, r, http.StatusServiceUnavailable, "rate")
		return false
	}
	if !ok {
		w.Header().Set("Retry-After", "60")
		b.ui.errorPage(w, r, http.StatusTooManyRequests, "rate")
		return false
	}
	return true
}
