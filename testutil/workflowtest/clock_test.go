package workflowtest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/testutil/workflowtest"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fired reports whether ch has a value now, and which.
func fired(ch <-chan time.Time) (time.Time, bool) {
	select {
	case at := <-ch:
		return at, true
	default:
		return time.Time{}, false
	}
}

func TestClock_TimersFireWhenAdvancedPastTheirDueTime(t *testing.T) {
	t.Parallel()
	c := workflowtest.NewClock(epoch)
	require.Equal(t, epoch, c.Now())

	now, _ := c.NewTimer(0)
	at, ok := fired(now)
	require.True(t, ok, "a timer of 0 fires at once")
	require.Equal(t, epoch, at)
	past, _ := c.NewTimer(-time.Minute)
	_, ok = fired(past)
	require.True(t, ok, "a negative timer fires at once")
	require.Zero(t, c.Pending())

	oneMin, _ := c.NewTimer(time.Minute)
	twoMin, stopTwo := c.NewTimer(2 * time.Minute)
	threeMin, _ := c.NewTimer(3 * time.Minute)
	require.Equal(t, 3, c.Pending())

	c.Advance(30 * time.Second)
	_, ok = fired(oneMin)
	require.False(t, ok, "not due yet")

	c.Advance(30 * time.Second) // exactly due
	at, ok = fired(oneMin)
	require.True(t, ok)
	require.Equal(t, epoch.Add(time.Minute), at)
	require.Equal(t, 2, c.Pending())

	require.True(t, stopTwo(), "stopping a pending timer")
	require.False(t, stopTwo(), "stopping it again")
	require.Equal(t, 1, c.Pending())

	c.Advance(time.Hour)
	_, ok = fired(twoMin)
	require.False(t, ok, "a stopped timer never fires")
	at, ok = fired(threeMin)
	require.True(t, ok)
	require.Equal(t, epoch.Add(time.Hour+time.Minute), at, "a timer receives the clock's time")
	require.Zero(t, c.Pending())

	require.Panics(t, func() { c.Advance(-time.Second) })
}

func TestClock_BlockUntil(t *testing.T) {
	t.Parallel()
	c := workflowtest.NewClock(epoch)
	require.NoError(t, c.BlockUntil(t.Context(), 0))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.BlockUntil(ctx, 1), context.DeadlineExceeded, "nothing pending: it gives up with ctx")

	go func() {
		c.NewTimer(time.Minute)
		c.NewTimer(time.Hour)
	}()
	require.NoError(t, c.BlockUntil(t.Context(), 2))
	require.Equal(t, 2, c.Pending())
}

func TestClock_ConcurrentUse(t *testing.T) {
	t.Parallel()
	c := workflowtest.NewClock(epoch)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				ch, stop := c.NewTimer(time.Duration(i+j+1) * time.Second)
				if j%2 == 0 {
					stop()
				} else {
					c.Advance(time.Minute)
					<-ch // due: the Advance above, or another's, fired it
				}
				_ = c.Now()
				_ = c.Pending()
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = c.BlockUntil(t.Context(), 0)
	}()
	wg.Wait()
	require.Zero(t, c.Pending())
	require.Equal(t, epoch.Add(8*25*time.Minute), c.Now())
}
