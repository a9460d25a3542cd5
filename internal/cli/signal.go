package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
)

// shutdownOnSignal returns a context that ends at the first of sigs, as
// signal.NotifyContext's does, but stops catching them as soon as it has: a
// second signal then has its default effect (SIGINT, SIGTERM and SIGHUP end
// the process), so that a shutdown that hangs can still be cut short. At the
// first signal it logs what the command is now doing and that a second
// signal forces exit. stop releases the signals and must be called.
func shutdownOnSignal(log *slog.Logger, doing string, sigs ...os.Signal) (ctx context.Context, stop context.CancelFunc) {
	ctx, stopNotify := signal.NotifyContext(context.Background(), sigs...)
	unwatch := context.AfterFunc(ctx, func() {
		stopNotify()
		log.Warn(context.Cause(ctx).Error() + ": " + doing + "; a second signal forces exit")
	})
	return ctx, func() {
		unwatch() // a return without a signal logs nothing
		stopNotify()
	}
}
