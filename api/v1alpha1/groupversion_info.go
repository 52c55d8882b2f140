// Package v1alpha1 contains the API of officialaccount-operator: webhook events from
// Tencent Cloud Chat's Official Accounts stored as OfficialAccountSubscription resources,
// and the SubscriptionSinks they are delivered to.
//
// +kubebuilder:object:generate=true
// +groupName=officialaccount.chat-operators.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "officialaccount.chat-operators.dev", Version: "v1alpha1"}

	// SchemeBuilder adds the API's types to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
