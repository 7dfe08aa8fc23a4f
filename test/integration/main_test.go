package integration

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// protoactor-go starts this goroutine when a message reaches a
		// stopped actor (a frame for a connection that has just closed); it
		// ends by itself when the dead-letter log throttle period is over.
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}
