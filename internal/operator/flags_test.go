package operator

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestFlagsFromCommandLineAndEnvironment(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("1400000001=s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, f *Flags)
	}{
		{name: "defaults", args: []string{"--sdk-app-id=1"}, check: func(t *testing.T, f *Flags) {
			w := f.Config.Webhook
			if w.BindAddress != ":8090" || w.Path != "/callback" || w.MaxRequestSkew != time.Minute || w.MaxBodyBytes != 1<<20 ||
				f.Config.DeliveredRetention != time.Hour || f.Config.FailedRetention != 168*time.Hour ||
				f.Config.MaxConcurrentReconciles != 8 || !f.LeaderElect || w.Namespace == "" ||
				f.Config.DeliveryYieldStoreDelay != 25*time.Millisecond || f.Config.DeliveryYieldMaxWait != 10*time.Second {
				t.Fatalf("unexpected defaults: %+v", f.Config)
			}
		}},
		{name: "repeated and comma-separated app IDs", args: []string{"--sdk-app-id=1", "--sdk-app-id=2,3"}, check: func(t *testing.T, f *Flags) {
			if !slices.Equal(f.Config.Webhook.SDKAppIDs, []string{"1", "2", "3"}) {
				t.Fatalf("SDKAppIDs = %v", f.Config.Webhook.SDKAppIDs)
			}
		}},
		{name: "environment fills what the command line leaves out",
			args: []string{"--event-namespace=from-flag"},
			env: map[string]string{"OFFICIALACCOUNT_SDK_APP_ID": "4,5", "OFFICIALACCOUNT_EVENT_NAMESPACE": "from-env",
				"OFFICIALACCOUNT_DELIVERED_RETENTION": "10m", "OFFICIALACCOUNT_AUTH_TOKEN_FILE": tokens},
			check: func(t *testing.T, f *Flags) {
				w := f.Config.Webhook
				if !slices.Equal(w.SDKAppIDs, []string{"4", "5"}) || w.Namespace != "from-flag" ||
					f.Config.DeliveredRetention != 10*time.Minute || w.TokenFile != tokens {
					t.Fatalf("got %+v", f.Config)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f := BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := f.Complete(fs); err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

func TestABadEnvironmentValueIsAnError(t *testing.T) {
	t.Setenv("OFFICIALACCOUNT_STORE_TIMEOUT", "soon")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := BindFlags(fs)
	_ = fs.Parse(nil)
	if err := f.Complete(fs); err == nil {
		t.Fatal("accepted OFFICIALACCOUNT_STORE_TIMEOUT=soon")
	}
}

// The webhook's stores reach the pressure the deliveries ask: a store slower than usual
// by more than --delivery-yield-store-delay makes the next delivery wait its turn, and
// with the delay at 0 none waits.
func TestTheWebhooksSlowStoresMakeDeliveriesGiveWay(t *testing.T) {
	for _, delay := range []string{"0s", "25ms"} {
		t.Run("delay="+delay, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f := BindFlags(fs)
			if err := fs.Parse([]string{"--sdk-app-id=1", "--delivery-yield-store-delay=" + delay}); err != nil {
				t.Fatal(err)
			}
			opts, pressure := webhookWithPressure(f)
			opts.OnStore(time.Millisecond) // the usual store
			opts.OnStore(time.Second)
			release, waited := pressure.AdmitDelivery(context.Background(), time.Minute)
			release()
			if gaveWay := waited >= 10*time.Millisecond; gaveWay != (delay != "0s") {
				t.Fatalf("waited %s after a slow store with the delay at %s", waited, delay)
			}
		})
	}
}
