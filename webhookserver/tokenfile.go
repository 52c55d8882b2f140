package webhookserver

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// tokenPollInterval is how often the token file is read even without a file event, as
// controller-runtime's certwatcher does: some volume types send none.
const tokenPollInterval = 10 * time.Second

// watchTokenFile reads the token file again whenever it changes, until ctx ends, and puts
// its tokens in use. It watches the file's directory, not the file: the kubelet updates a
// mounted Secret by pointing the directory's ..data symlink at a new folder, which
// changes what the file's path reads without a single event on the file itself. A file
// that does not parse, or that would leave an app without a token, is refused and the
// last good tokens stay in use, so that a bad edit never opens the webhook or shuts it.
func (s *Server) watchTokenFile(ctx context.Context) {
	path := s.opts.TokenFile
	last := fileDigest(path)
	reload := func(why string) {
		digest := fileDigest(path)
		if digest == last {
			return
		}
		last = digest
		tokens, err := LoadTokens(path)
		if err == nil {
			err = checkTokens(tokens, s.opts.SDKAppIDs, s.opts.AllowUnsigned)
		}
		if err != nil {
			tokenReloadsTotal.WithLabelValues("failed").Inc()
			s.log.Error(err, "the auth token file changed but cannot be used; the last good tokens stay in use", "file", path)
			return
		}
		s.setTokens(tokens)
		tokenReloadsTotal.WithLabelValues("loaded").Inc()
		s.log.Info("auth tokens reloaded", "file", path, "trigger", why, "signedApps", len(tokens))
	}

	// Without a watcher both channels stay nil and only the poll reads the file.
	var events <-chan fsnotify.Event
	var watchErrors <-chan error
	if watcher, err := fsnotify.NewWatcher(); err != nil {
		s.log.Error(err, "cannot watch the auth token file; polling it instead", "every", tokenPollInterval)
	} else {
		defer watcher.Close()
		if err := watcher.Add(filepath.Dir(path)); err != nil {
			s.log.Error(err, "cannot watch the auth token file's folder; polling it instead", "every", tokenPollInterval)
		}
		events, watchErrors = watcher.Events, watcher.Errors
	}
	ticker := time.NewTicker(tokenPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			reload("file event")
		case err := <-watchErrors:
			// Read, or the watcher stops sending events; the poll still covers for it.
			s.log.Error(err, "watching the auth token file's folder")
		case <-ticker.C:
			reload("poll")
		}
	}
}

// fileDigest is the SHA-256 of what path reads now, or nil when it cannot be read.
func fileDigest(path string) [sha256.Size]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(b)
}
