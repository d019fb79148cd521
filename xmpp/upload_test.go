package xmpp

import "testing"

// A slot's put and get URLs, and only the headers XEP-0363 allows, with
// no line breaks that could smuggle more into the request.
func TestParseSlot(t *testing.T) {
	s, err := ParseSlot(parseEl(t, `<slot xmlns='urn:xmpp:http:upload:0'><put url='https://u.example/p'>`+
		`<header name='Authorization'>Basic x</header><header name='Cookie'>a=b</header>`+
		`<header name='Host'>evil</header><header name='Expires'>x&#13;&#10;Evil: 1</header></put>`+
		`<get url='https://u.example/g'/></slot>`))
	if err != nil {
		t.Fatal(err)
	}
	if s.PutURL != "https://u.example/p" || s.GetURL != "https://u.example/g" || len(s.Headers) != 2 ||
		s.Headers["Authorization"] != "Basic x" || s.Headers["Cookie"] != "a=b" {
		t.Errorf("slot = %+v", s)
	}
	for _, bad := range []string{
		`<slot xmlns='urn:xmpp:http:upload:0'><get url='https://u.example/g'/></slot>`,
		`<slot xmlns='urn:xmpp:http:upload:0'><put url='https://u.example/p'/></slot>`,
		`<other xmlns='urn:xmpp:http:upload:0'/>`,
	} {
		if _, err := ParseSlot(parseEl(t, bad)); err == nil {
			t.Errorf("ParseSlot(%s) accepted", bad)
		}
	}
}

// disco#info of an upload service: the feature, and max-file-size from
// its form.
func TestUploadInfo(t *testing.T) {
	q := parseEl(t, `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='store' type='file'/>`+
		`<feature var='urn:xmpp:http:upload:0'/><x xmlns='jabber:x:data' type='result'>`+
		`<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>`+
		`<field var='max-file-size'><value>1048576</value></field></x></query>`)
	if svc, ok := uploadInfo("upload.iot.test", q); !ok || svc.MaxSize != 1048576 || svc.JID != "upload.iot.test" {
		t.Errorf("uploadInfo = %+v, %v", svc, ok)
	}
	if _, ok := uploadInfo("iot.test", parseEl(t, `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:ping'/></query>`)); ok {
		t.Error("a service without the feature found")
	}
}
