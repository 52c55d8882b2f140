package leanclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// clientGoDecoder decodes a watch stream as client-go's Request.Watch does with
// controller-runtime's codecs: what the lean decoder is held to.
func clientGoDecoder(scheme *runtime.Scheme, body io.ReadCloser) watch.Decoder {
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	frames := streaming.NewDecoder(info.StreamSerializer.Framer.NewFrameReader(body), info.StreamSerializer.Serializer)
	return restclientwatch.NewDecoder(frames, codecs.DecoderToVersion(info.Serializer, v1alpha1.GroupVersion))
}

// decoded is what a decoder made of a stream: its events, and the error that ended it.
type decoded struct {
	events []watch.Event
	err    error
}

func decodeAll(d watch.Decoder) decoded {
	var out decoded
	for {
		eventType, obj, err := d.Decode()
		if err != nil {
			out.err = err
			return out
		}
		out.events = append(out.events, watch.Event{Type: eventType, Object: obj})
	}
}

// sameAs says why lean differs from reference, or "" if it does not: the same events, and
// an error of the same class (the end of the stream, a cut frame, or any other).
func (lean decoded) sameAs(reference decoded) string {
	if !apiequality.Semantic.DeepEqual(lean.events, reference.events) {
		return "events differ"
	}
	for _, end := range []error{io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(lean.err, end) != errors.Is(reference.err, end) {
			return "the stream ends differently"
		}
	}
	return ""
}

func watchFrame(t testing.TB, eventType watch.EventType, obj any) string {
	object, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := json.Marshal(map[string]any{"type": eventType, "object": json.RawMessage(object)})
	if err != nil {
		t.Fatal(err)
	}
	return string(frame) + "\n"
}

// lifeFrames are the frames of one event's life as the API server writes them: created by
// the webhook, its status written by the reconciler, deleted.
func lifeFrames(t testing.TB) string {
	now := metav1.NewTime(time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC))
	sub := event("oa-add-0123456789abcdef")
	sub.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "OfficialAccountSubscription"}
	sub.UID, sub.ResourceVersion, sub.Generation, sub.CreationTimestamp = "dd19fb7d-62a4-43ff-a0ff-381a2e87d156", "227", 1, now
	sub.Spec.ReceivedTime = now
	sub.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "webhook", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: v1alpha1.GroupVersion.String(), Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{
			Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:kept":{}}},"f:spec":{".":{},"f:action":{},"f:callbackCommand":{},"f:eventTime":{},"f:officialAccount":{},"f:operatorAccount":{},"f:receivedTime":{},"f:sdkAppID":{},"f:subscriberCount":{},"f:subscribers":{}}}`)}}}
	added := watchFrame(t, watch.Added, sub)

	sub.ResourceVersion = "228"
	sub.Status = v1alpha1.OfficialAccountSubscriptionStatus{ObservedGeneration: 1, CompletionTime: &now,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonDelivered,
			Message: "Delivered to 1 of 1 sinks", LastTransitionTime: now, ObservedGeneration: 1}},
		Sinks: []v1alpha1.SinkDelivery{{Name: "http", State: v1alpha1.DeliveryDelivered, Attempts: 1,
			FirstAttemptTime: &now, LastAttemptTime: &now, DeliveredTime: &now}}}
	sub.ManagedFields = append(sub.ManagedFields, metav1.ManagedFieldsEntry{Manager: "reconciler", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: v1alpha1.GroupVersion.String(), Time: &now, Subresource: "status", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{
			Raw: []byte(`{"f:status":{".":{},"f:completionTime":{},"f:conditions":{".":{},"k:{\"type\":\"Ready\"}":{".":{},"f:lastTransitionTime":{},"f:message":{},"f:observedGeneration":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:sinks":{".":{},"k:{\"name\":\"http\"}":{".":{},"f:attempts":{},"f:deliveredTime":{},"f:firstAttemptTime":{},"f:lastAttemptTime":{},"f:name":{},"f:state":{}}}}}`)}})
	modified := watchFrame(t, watch.Modified, sub)
	sub.ResourceVersion = "229"
	return added + modified + watchFrame(t, watch.Deleted, sub)
}

func TestFrameDecoderReadsWhatClientGoReads(t *testing.T) {
	scheme := testScheme(t)
	bookmark := &v1alpha1.OfficialAccountSubscription{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "OfficialAccountSubscription"},
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: "230",
			Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
	}
	for _, tt := range []struct {
		name   string
		stream string
		events int // how many events the stream holds
	}{
		{"an event's life", lifeFrames(t), 3},
		{"the bookmark that ends a watch-list's initial events", watchFrame(t, watch.Bookmark, bookmark), 1},
		{"an expired resourceVersion", `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
			`"message":"too old resource version: 1 (500)","reason":"Expired","code":410}}` + "\n", 1},
		{"a resourceVersion ahead of the server", `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},` +
			`"status":"Failure","message":"Timeout: Too large resource version: 99, current: 5","reason":"Timeout",` +
			`"details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}}`, 1},
		{"frames without newlines between them", `{"type":"BOOKMARK","object":{"kind":"OfficialAccountSubscription",` +
			`"apiVersion":"officialaccount.chat-operators.dev/v1alpha1","metadata":{"resourceVersion":"7"}}} {"type":"BOOKMARK","object":` +
			`{"kind":"OfficialAccountSubscription","apiVersion":"officialaccount.chat-operators.dev/v1alpha1","metadata":{"resourceVersion":"8"}}}`, 2},
		{"an object without its kind", `{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}`, 0},
		{"an object without its apiVersion", `{"type":"BOOKMARK","object":{"kind":"OfficialAccountSubscription","metadata":{}}}`, 0},
		{"an unknown event type", `{"type":"RENAMED","object":{}}`, 0},
		{"an object of the wrong shape", `{"type":"ADDED","object":{"kind":"OfficialAccountSubscription",` +
			`"apiVersion":"officialaccount.chat-operators.dev/v1alpha1","spec":{"subscribers":"jared"}}}`, 0},
		{"an object that is not JSON", `{"type":"ADDED","object":{"spec":}}`, 0},
		{"a stream cut inside a frame", lifeFrames(t)[:700], 0},
		{"an empty stream", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reference := decodeAll(clientGoDecoder(scheme, io.NopCloser(bytes.NewBufferString(tt.stream))))
			lean := decodeAll(newFrameDecoder(io.NopCloser(bytes.NewBufferString(tt.stream))))
			if len(reference.events) != tt.events {
				t.Fatalf("client-go read %d events, the case expects %d: %v", len(reference.events), tt.events, reference.err)
			}
			if why := lean.sameAs(reference); why != "" {
				t.Fatalf("%s:\nlean:     %+v, %v\nclient-go: %+v, %v", why, lean.events, lean.err, reference.events, reference.err)
			}
		})
	}
}

// The lean watch against a real API server: the same events as client-go's watch, a
// watch-list's initial events and its bookmark, the same refusal, and an informer that
// fills and follows through it.
func TestLeanWatch(t *testing.T) {
	cfg, scheme, httpClient, typed := startAPIServer(t)
	watcher, err := NewWatcher(cfg, httpClient, scheme, "default")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := typed.Create(ctx, event("there-before")); err != nil {
		t.Fatal(err)
	}
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := typed.List(ctx, &list, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	from := metav1.ListOptions{ResourceVersion: list.ResourceVersion}
	clientGo := func(opts metav1.ListOptions) (watch.Interface, error) {
		return typed.Watch(ctx, &v1alpha1.OfficialAccountSubscriptionList{}, client.InNamespace("default"), &client.ListOptions{Raw: &opts})
	}

	t.Run("an event's life", func(t *testing.T) {
		reference, lean := mustWatch(t, clientGo, from), mustWatch(t, func(o metav1.ListOptions) (watch.Interface, error) { return watcher.Watch(ctx, o) }, from)
		sub := event("lived")
		if err := typed.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		sub.Status.ObservedGeneration = 1
		sub.Status.Sinks = []v1alpha1.SinkDelivery{{Name: "http", State: v1alpha1.DeliveryDelivered, Attempts: 1}}
		if err := typed.Status().Update(ctx, sub); err != nil {
			t.Fatal(err)
		}
		if err := typed.Delete(ctx, sub); err != nil {
			t.Fatal(err)
		}
		want := receive(t, reference, 3)
		if got := receive(t, lean, 3); !apiequality.Semantic.DeepEqual(got, want) {
			t.Fatalf("lean watch:\n%+v\nclient-go's:\n%+v", got, want)
		}
		if want[1].Object.(*v1alpha1.OfficialAccountSubscription).Status.Sinks[0].State != v1alpha1.DeliveryDelivered {
			t.Fatalf("the status update's event has no status: %+v", want[1].Object)
		}
	})

	t.Run("a watch-list's initial events and their bookmark", func(t *testing.T) {
		watchList := metav1.ListOptions{SendInitialEvents: new(true), AllowWatchBookmarks: true,
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}
		reference, lean := mustWatch(t, clientGo, watchList), mustWatch(t, func(o metav1.ListOptions) (watch.Interface, error) { return watcher.Watch(ctx, o) }, watchList)
		want, got := receive(t, reference, 2), receive(t, lean, 2)
		if want[0].Type != watch.Added || want[1].Type != watch.Bookmark {
			t.Fatalf("client-go's watch-list: %+v", want)
		}
		if !apiequality.Semantic.DeepEqual(got[0], want[0]) {
			t.Fatalf("lean watch's initial event:\n%+v\nclient-go's:\n%+v", got[0], want[0])
		}
		// The bookmarks' resourceVersions may differ: the API server writes leases between.
		if bookmark, ok := got[1].Object.(*v1alpha1.OfficialAccountSubscription); got[1].Type != watch.Bookmark || !ok ||
			bookmark.Annotations[metav1.InitialEventsAnnotationKey] != "true" || bookmark.ResourceVersion == "" {
			t.Fatalf("the lean watch's initial events end with %+v", got[1])
		}
	})

	t.Run("a watch the API server refuses is client-go's error", func(t *testing.T) {
		bad := metav1.ListOptions{ResourceVersion: "1", ResourceVersionMatch: metav1.ResourceVersionMatchExact}
		_, want := clientGo(bad)
		_, got := watcher.Watch(ctx, bad)
		if want == nil || got == nil || apierrors.ReasonForError(got) != apierrors.ReasonForError(want) || got.Error() != want.Error() {
			t.Fatalf("lean watch: %v, client-go's: %v", got, want)
		}
	})

	t.Run("the informer of events fills and follows through the lean watch", func(t *testing.T) {
		// controller-runtime's list and watch fail here: what the informer holds came
		// through the lean watch, its watch-list first.
		var fallbacks atomic.Int32
		refused := func() error { fallbacks.Add(1); return errors.New("not the lean watch") }
		informer := watcher.NewInformer(&toolscache.ListWatch{
			ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return nil, refused() },
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, refused() },
		}, &v1alpha1.OfficialAccountSubscription{}, 0, toolscache.Indexers{})
		informerCtx, stop := context.WithCancel(ctx)
		defer stop()
		go informer.RunWithContext(informerCtx)
		if !toolscache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			t.Fatal("the informer never synced")
		}
		if _, held, err := informer.GetStore().GetByKey("default/there-before"); err != nil || !held {
			t.Fatalf("an event there before the informer started: held %v, %v", held, err)
		}
		after := event("after-the-start")
		after.Spec.OfficialAccount = "@TOA#_followed"
		if err := typed.Create(ctx, after); err != nil {
			t.Fatal(err)
		}
		for {
			obj, held, _ := informer.GetStore().GetByKey("default/after-the-start")
			if held && obj.(*v1alpha1.OfficialAccountSubscription).Spec.OfficialAccount == "@TOA#_followed" {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal("the informer never saw the event created after it started")
			case <-time.After(20 * time.Millisecond):
			}
		}
		if n := fallbacks.Load(); n != 0 {
			t.Fatalf("the informer fell back to controller-runtime's list or watch %d times", n)
		}
	})
}

// A watch whose connection fails before its stream begins is opened again, as client-go's
// is, and after 10 tries is an empty watch; a real HTTP server drops the connections.
func TestAWatchWhoseConnectionFailsIsOpenedAgain(t *testing.T) {
	bookmark := `{"type":"BOOKMARK","object":{"kind":"OfficialAccountSubscription",` +
		`"apiVersion":"officialaccount.chat-operators.dev/v1alpha1","metadata":{"resourceVersion":"42"}}}` + "\n"
	for _, tt := range []struct {
		name      string
		drops     int32 // connections dropped before the server answers
		attempts  int32
		bookmarks int
	}{
		{"dropped three times, then streamed", 3, 4, 1},
		{"dropped every time", 1 << 30, watchRetries + 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if attempts.Add(1) <= tt.drops {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						_ = conn.Close()
					}
					return
				}
				w.Header().Set("Content-Type", runtime.ContentTypeJSON)
				_, _ = io.WriteString(w, bookmark)
			}))
			defer server.Close()
			w, err := watchThrough(t, server)
			if err != nil {
				t.Fatal(err)
			}
			var bookmarks int
			for e := range w.ResultChan() {
				if e.Type != watch.Bookmark {
					t.Fatalf("event %+v", e)
				}
				bookmarks++
			}
			if attempts.Load() != tt.attempts || bookmarks != tt.bookmarks {
				t.Fatalf("%d attempts and %d bookmarks, want %d and %d", attempts.Load(), bookmarks, tt.attempts, tt.bookmarks)
			}
		})
	}
}

// The API server's refusal is not a failed connection, whatever its message says: it
// comes back at once, as client-go's does.
func TestAWatchTheAPIServerRefusesIsNotOpenedAgain(t *testing.T) {
	var attempts atomic.Int32
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.Header().Set("Content-Type", runtime.ContentTypeJSON)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",`+
			`"message":"etcd: connection reset by peer","reason":"InternalError","code":500}`)
	}))
	defer server.Close()
	if _, err := watchThrough(t, server); !apierrors.IsInternalError(err) || attempts.Load() != 1 {
		t.Fatalf("%d attempts, error %v; want one attempt and the API server's InternalError", attempts.Load(), err)
	}
}

// watchThrough opens a lean watch of server's events, trying a failed connection again
// after 10 ms instead of a second.
func watchThrough(t *testing.T, server *httptest.Server) (watch.Interface, error) {
	watcher, err := NewWatcher(&rest.Config{Host: server.URL}, server.Client(), testScheme(t), "default")
	if err != nil {
		t.Fatal(err)
	}
	watcher.retryInterval = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return watcher.Watch(ctx, metav1.ListOptions{})
}

func mustWatch(t *testing.T, open func(metav1.ListOptions) (watch.Interface, error), opts metav1.ListOptions) watch.Interface {
	t.Helper()
	w, err := open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

func receive(t *testing.T, w watch.Interface, n int) []watch.Event {
	t.Helper()
	var got []watch.Event
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch ended after %d events: %+v", len(got), got)
			}
			got = append(got, e)
		case <-timeout:
			t.Fatalf("%d events in 30 s, want %d: %+v", len(got), n, got)
		}
	}
	return got
}

// BenchmarkWatchDecode decodes the frames of one event's life as client-go does and as
// the lean decoder does.
func BenchmarkWatchDecode(b *testing.B) {
	scheme := testScheme(b)
	stream := []byte(lifeFrames(b))
	for _, d := range []struct {
		name    string
		decoder func(io.ReadCloser) watch.Decoder
	}{
		{"client-go", func(body io.ReadCloser) watch.Decoder { return clientGoDecoder(scheme, body) }},
		{"lean", func(body io.ReadCloser) watch.Decoder { return newFrameDecoder(body) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := decodeAll(d.decoder(io.NopCloser(bytes.NewReader(stream)))); len(got.events) != 3 || got.err != io.EOF {
					b.Fatalf("%d events, %v", len(got.events), got.err)
				}
			}
		})
	}
}
