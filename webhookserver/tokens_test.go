package webhookserver

import (
	"bufio"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    Tokens
		wantErr string
	}{
		{name: "one app", input: "1400000000=secret\n", want: Tokens{"1400000000": {"secret"}}},
		{name: "comments, blanks and spaces", input: "# prod\n\n 1400000000 = a=b \n1400000001=c",
			want: Tokens{"1400000000": {"a=b"}, "1400000001": {"c"}}},
		{name: "two tokens of one app, while it rotates", input: "1=old\n1=new", want: Tokens{"1": {"old", "new"}}},
		{name: "empty file", input: "", want: Tokens{}},
		{name: "no equals sign", input: "1400000000 secret", wantErr: "line 1: want SDKAppID=token"},
		{name: "empty token", input: "\n1400000000=", wantErr: "line 2"},
		{name: "the same token twice", input: "1=secret\n1=secret", wantErr: "line 2: the same token of SDKAppID 1 again"},
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
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckTokens(t *testing.T) {
	apps := []string{"1", "2"}
	tests := []struct {
		name          string
		tokens        Tokens
		allowUnsigned bool
		wantErr       string
	}{
		{name: "every app signed", tokens: Tokens{"1": {"a"}, "2": {"b", "c"}}},
		{name: "an app without a token", tokens: Tokens{"1": {"a"}}, wantErr: "SDKAppID 2 has no webhook authentication token"},
		{name: "no token at all, unsigned allowed", tokens: Tokens{}, allowUnsigned: true},
		{name: "a token for an app not accepted", tokens: Tokens{"1": {"a"}, "2": {"b"}, "3": {"c"}}, wantErr: `SDKAppID "3"`},
		{name: "a token for an app not accepted, unsigned allowed", tokens: Tokens{"3": {"c"}}, allowUnsigned: true, wantErr: `SDKAppID "3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTokens(tt.tokens, apps, tt.allowUnsigned)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
