package controllers_test

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// sinkWithSecret creates a Secret labelled for sinks, named "<name>-<key>", with value
// under key, and a sink with spec that names it through ref; both go when the spec ends.
func sinkWithSecret(name, key, value string, spec func(ref corev1.SecretKeySelector) v1alpha1.SubscriptionSinkSpec) *v1alpha1.SubscriptionSink {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + key, Namespace: eventNamespace, Labels: sinkCredentials},
		StringData: map[string]string{key: value}}
	Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
	ref := corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}, Key: key}
	sink := &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace}, Spec: spec(ref)}
	Expect(k8s.Create(context.Background(), sink)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), sink) })
	return sink
}

// subscribeThenUnsubscribe posts two of Tencent's callbacks for account: jared and leckie
// subscribe, then jared unsubscribes. A mirror then holds leckie alone.
func subscribeThenUnsubscribe(account string) {
	now := time.Now().UnixMilli()
	for _, event := range []struct {
		command string
		at      int64
		who     []string
	}{
		{webhookserver.CommandAfterAddSubscriber, now, []string{"jared", "leckie"}},
		{webhookserver.CommandAfterDeleteSubscriber, now + 1000, []string{"jared"}},
	} {
		status, answer := post(query(plainApp, event.command), callback(event.command, account, event.at, event.who...))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
	}
}
