package exporterkit

import "errors"

// TooLargeError marks a request the backend refused as too large (HTTP 413 Request Entity
// Too Large): Bisect splits it instead of dropping it.
type TooLargeError struct{ Err error }

func (e *TooLargeError) Error() string { return e.Err.Error() }
func (e *TooLargeError) Unwrap() error { return e.Err }

// IsTooLarge reports whether err is, or wraps, a *TooLargeError.
func IsTooLarge(err error) bool {
	var t *TooLargeError
	return errors.As(err, &t)
}

// Bisect sends the items [lo, hi) of a batch with send. When the backend refuses a request as
// too large (a *TooLargeError), the range is split in two halves sent one after the other,
// recursively, down to single items: an item refused alone is passed to drop (the caller
// counts it, with its reason) and the others are still delivered. Sending stops at the first
// error that is not "too large": it is returned, and only the ranges before it were sent. The
// recursion is log2(hi-lo) deep; at most 2(hi-lo)-1 requests are made.
func Bisect(lo, hi int, send func(lo, hi int) error, drop func(i int, err error)) error {
	if hi <= lo {
		return nil
	}
	err := send(lo, hi)
	if err == nil || !IsTooLarge(err) {
		return err
	}
	if hi-lo == 1 {
		drop(lo, err)
		return nil
	}
	mid := lo + (hi-lo)/2
	if err := Bisect(lo, mid, send, drop); err != nil {
		return err
	}
	return Bisect(mid, hi, send, drop)
}
