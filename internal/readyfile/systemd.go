package readyfile

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready says a daemon is ready to every supervisor that asked: it writes
// the ready file when path is set, and tells systemd (READY=1, with a
// status line) when the daemon runs under a unit of Type=notify, which
// sets NOTIFY_SOCKET; without one the notification is a no-op. A failure
// is logged, never fatal: the daemon serves either way.
func Ready(log *slog.Logger, path string, info Info, status string) {
	if path != "" {
		if err := Write(path, info); err != nil {
			log.Error("writing the ready file", "path", path, "err", err)
		}
	}
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status); err != nil {
		log.Error("telling systemd the daemon is ready", "err", err)
	}
}

// Stopping tells systemd the daemon is stopping (STOPPING=1), so that a
// slow shutdown is not taken for a hang.
func Stopping(log *slog.Logger) {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyStopping); err != nil {
		log.Error("telling systemd the daemon is stopping", "err", err)
	}
}

// Watchdog keeps systemd's watchdog fed while the daemon is healthy: when
// the unit sets WatchdogSec, it calls healthy at a third of that interval
// and sends WATCHDOG=1 only when it returns nil, so that a daemon wedged
// in a way its own check sees (its store gone, its main loop stuck) is
// restarted by systemd rather than left running. Without a watchdog it
// returns at once; otherwise it runs until ctx ends.
func Watchdog(ctx context.Context, log *slog.Logger, healthy func(context.Context) error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Error("reading systemd's watchdog interval", "err", err)
		return
	}
	if interval <= 0 {
		return
	}
	every := interval / 3
	log.Info("systemd watchdog on", "interval", interval, "check_every", every)
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		err := healthy(cctx)
		cancel()
		switch {
		case err != nil && !failing:
			// Said once per change, not every tick.
			log.Error("health check failed: not feeding systemd's watchdog", "err", err, "restart_within", interval)
			failing = true
			continue
		case err != nil:
			continue
		case failing:
			log.Info("health check passes again: feeding systemd's watchdog")
			failing = false
		}
		if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
			log.Error("feeding systemd's watchdog", "err", err)
		}
	}
}
