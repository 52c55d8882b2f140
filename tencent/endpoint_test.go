package tencent

import "testing"

func TestCheckEndpoint(t *testing.T) {
	allowed := []string{"http://127.0.0.1:8092", "https://proxy.example.com/tencent/"}
	tests := []struct {
		endpoint string
		ok       bool
	}{
		{"https://console.tim.qq.com", true},
		{"https://adminapisgp.im.qcloud.com/", true},
		{"https://adminapi.my-imcloud.com:443", true},
		{"https://ADMINAPIKR.IM.QCLOUD.COM", true},
		{"http://console.tim.qq.com", false},           // credentials in clear text
		{"https://console.tim.qq.com:8443", false},     // not Tencent's port
		{"https://tim.qq.com.attacker.example", false}, // a suffix of the host, not of the domain
		{"https://attacker.example/console.tim.qq.com", false},
		{"https://user@console.tim.qq.com", false},
		{"https://console.tim.qq.com?x=1", false},
		{"http://127.0.0.1:8092", true},
		{"http://127.0.0.1:8092/", true},
		{"http://127.0.0.1:80921", false},
		{"https://127.0.0.1:8092", false}, // another scheme than allowed
		{"https://proxy.example.com/tencent", true},
		{"https://proxy.example.com/tencent/v4", true},
		{"https://proxy.example.com/tencent-evil", false}, // not a whole segment
		{"https://proxy.example.com.evil", false},
		{"ftp://console.tim.qq.com", false},
		{"console.tim.qq.com", false},
	}
	for _, tt := range tests {
		err := CheckEndpoint(tt.endpoint, allowed)
		if (err == nil) != tt.ok {
			t.Errorf("CheckEndpoint(%q) = %v, want allowed %v", tt.endpoint, err, tt.ok)
		}
	}
}
