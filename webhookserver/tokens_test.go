package webhookserver

import (
	"bufio"
	"maps"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    map[string]string
		wantErr string
	}{
		{name: "one app", input: "1400000000=secret\n", want: map[string]string{"1400000000": "secret"}},
		{name: "comments, blanks and spaces", input: "# prod\n\n 1400000000 = a=b \n1400000001=c",
			want: map[string]string{"1400000000": "a=b", "1400000001": "c"}},
		{name: "empty file", input: "", want: map[string]string{}},
		{name: "no equals sign", input: "1400000000 secret", wantErr: "line 1: want SDKAppID=token"},
		{name: "empty token", input: "\n1400000000=", wantErr: "line 2"},
		{name: "duplicate app", input: "1=a\n1=b", wantErr: "line 2: SDKAppID 1 has a token already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTokens(bufio.NewScanner(strings.NewReader(tt.input)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error reveals a token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
