package queue

import "golang.org/x/time/rate"

func newBucket(perSecond float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}
